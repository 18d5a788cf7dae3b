"""N rules engine: every station on both sides under both rule sets, combinations, errors.

The expected tables below are written from the text of clinical-rules.md section 2, not read
from config/rules, so that a wrong rules file fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nstage.analysis import nrules
from nstage.paths import config_dir

ALL = ("1R", "1L", "2R", "2L", "3A", "3P", "4R", "4L", "5", "6", "7", "8", "9",
       "10R", "10L", "11R", "11L")  # fmt: skip


def _table(n1: str, n2: str) -> dict[str, str]:
    """Station -> category: N1 and N2 as listed, every other station N3."""
    cats = {s: "N1" for s in n1.split()} | {s: "N2" for s in n2.split()}
    return {s: cats.get(s, "N3") for s in ALL}


# rule set tnm: station 1 N3 either side; 5 and 6 left-sided; 3A 3P 7 8 9 N2 either side.
# rule set paper-2026: ipsilateral 1 is N2; 5 and 6 N2 for both sides.
EXPECTED = {
    ("tnm", "R"): _table("10R 11R", "2R 4R 3A 3P 7 8 9"),
    ("tnm", "L"): _table("10L 11L", "2L 4L 3A 3P 5 6 7 8 9"),
    ("paper-2026", "R"): _table("10R 11R", "1R 2R 3A 3P 4R 5 6 7 8 9"),
    ("paper-2026", "L"): _table("10L 11L", "1L 2L 3A 3P 4L 5 6 7 8 9"),
}
CASES = [(rs, side, s, cat) for (rs, side), t in EXPECTED.items() for s, cat in t.items()]
TNM9_OF_SINGLE = {"N1": "N1", "N2": "N2a", "N3": "N3"}


def test_expected_tables_match_the_text() -> None:
    assert sorted(k for k, v in EXPECTED[("tnm", "R")].items() if v == "N3") == sorted(
        ["1R", "1L", "2L", "4L", "5", "6", "10L", "11L"]
    )
    assert sorted(k for k, v in EXPECTED[("paper-2026", "L")].items() if v == "N3") == sorted(
        ["1R", "2R", "4R", "10R", "11R"]
    )


def test_available_rule_sets() -> None:
    assert {"tnm", "paper-2026"} <= set(nrules.available_rule_sets())


@pytest.mark.parametrize(("rule_set", "side", "station", "category"), CASES)
def test_single_station(rule_set: str, side: str, station: str, category: str) -> None:
    n = nrules.stage([station], side, rule_set)
    assert (n.tnm8, n.tnm9) == (category, TNM9_OF_SINGLE[category])
    assert nrules.station_category(station, side, rule_set) == category
    assert getattr(n, category.lower()) == (station,)
    assert n.rule_set == rule_set and n.tumour_side == side
    assert any(r.startswith(f"{station} ") and f"-> {category} (rule set {rule_set}" in r
               for r in n.reasons)  # fmt: skip


def test_no_positive_station_is_n0() -> None:
    for side in ("R", "L", None):
        n = nrules.stage([], side)
        assert (n.tnm8, n.tnm9) == ("N0", "N0")
        assert n.reasons


@pytest.mark.parametrize(
    ("positive", "side", "rule_set", "tnm8", "tnm9"),
    [
        (["10R", "11R"], "R", "tnm", "N1", "N1"),
        (["10R", "4R"], "R", "tnm", "N2", "N2a"),
        (["4R", "7"], "R", "tnm", "N2", "N2b"),
        (["4R", "4R"], "R", "tnm", "N2", "N2a"),  # the same station twice counts once
        (["4R", "7", "10L"], "R", "tnm", "N3", "N3"),
        (["2L", "4L", "1R"], "L", "tnm", "N3", "N3"),
        (["5", "6"], "L", "tnm", "N2", "N2b"),
        (["5"], "R", "tnm", "N3", "N3"),
        (["5"], "R", "paper-2026", "N2", "N2a"),
        (["1R", "4R"], "R", "paper-2026", "N2", "N2b"),
        (["1R", "4R"], "R", "tnm", "N3", "N3"),
        (["10L", "11L", "9"], "L", "paper-2026", "N2", "N2a"),
    ],
)
def test_combinations(positive: list[str], side: str, rule_set: str, tnm8: str, tnm9: str) -> None:
    n = nrules.stage(positive, side, rule_set)
    assert (n.tnm8, n.tnm9) == (tnm8, tnm9)


def test_highest_category_and_station_lists() -> None:
    n = nrules.stage(["10R", "4R", "7", "2L"], "right")
    assert (n.n1, n.n2, n.n3) == (("10R",), ("4R", "7"), ("2L",))
    assert (n.tnm8, n.tnm9) == ("N3", "N3")
    assert any("highest category" in r for r in n.reasons)
    d = n.as_dict()
    assert d["tnm8"] == "N3" and d["tnm9"] == "N3"
    assert d["stations_by_category"] == {"N1": ["10R"], "N2": ["4R", "7"], "N3": ["2L"]}
    json.dumps(d)


def test_ruleset_object_is_accepted() -> None:
    rs = nrules.load_rules("paper-2026")
    assert nrules.stage(["6"], "R", rs).tnm8 == "N2"
    assert rs.description and rs.source


def test_unknown_side_with_positive_stations() -> None:
    n = nrules.stage(["4R"], None, "tnm")
    assert (n.tnm8, n.tnm9) == ("N+", "N+")
    assert n.tumour_side is None and n.positive == ("4R",)
    text = " ".join(n.reasons)
    assert "unknown" in text and "N2 to N3" in text and "N2a to N3" in text
    assert n.as_dict()["if_side"] == {  # 4R: ipsilateral N2 for a right tumour, N3 for a left
        "R": {"tnm8": "N2", "tnm9": "N2a"},
        "L": {"tnm8": "N3", "tnm9": "N3"},
    }
    both = nrules.stage(["7"], None)  # same category either side: still N+ without a side
    assert (both.tnm8, both.tnm9) == ("N+", "N+")


def test_unknown_station_is_named() -> None:
    with pytest.raises(ValueError, match="'12R'"):
        nrules.stage(["4R", "12R"], "R")
    with pytest.raises(ValueError, match="'4X'"):
        nrules.station_category("4X", "R")


def test_bad_tumour_side() -> None:
    with pytest.raises(ValueError, match="tumour side 'M'"):
        nrules.stage(["7"], "M")
    assert nrules.stage(["7"], "left").tumour_side == "L"


def test_unknown_rule_set() -> None:
    with pytest.raises(nrules.RulesError, match="unknown rule set 'nope'.*available"):
        nrules.load_rules("nope")
    with pytest.raises(nrules.RulesError, match="invalid rule set name"):
        nrules.load_rules("../rules/tnm")


def _valid_sides() -> dict[str, dict[str, list[str]]]:
    raw = json.loads((config_dir() / "rules" / "tnm.json").read_text())
    sides: dict[str, dict[str, list[str]]] = raw["sides"]
    return sides


def _broken(sides: dict[str, dict[str, list[str]]], **top: object) -> dict[str, object]:
    return {"name": "broken", "description": "d", "source": "s", "sides": sides, **top}


def _edit(side: str, cat: str, members: list[str]) -> dict[str, dict[str, list[str]]]:
    sides = _valid_sides()
    sides[side][cat] = members
    return sides


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_broken(_edit("R", "N2", ["2R", "4R", "3A", "3P", "7", "8"])), "side R: .*9 not assigned"),
        (_broken(_edit("L", "N1", ["10L", "11L", "7"])), "side L: station 7 assigned twice"),
        (_broken(_edit("R", "N1", ["10R", "11R", "12R"])), "side R, N1: unknown station '12R'"),
        (_broken({"R": _valid_sides()["R"]}), "no table for tumour side L"),
        (_broken({**_valid_sides(), "M": {}}), "unknown tumour side 'M'"),
        (_broken({"R": {**_valid_sides()["R"], "N4": []}, "L": _valid_sides()["L"]}),
         "unknown category 'N4'"),
        (_broken(_valid_sides(), name="other"), "file says name 'other'"),
        ({"name": "broken"}, "expected an object with a 'sides' object"),
        ("{not json", "cannot parse"),
    ],
)
def test_broken_rules_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object, message: str
) -> None:
    (tmp_path / "rules").mkdir()
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / "rules" / "broken.json").write_text(text)
    monkeypatch.setenv("NSTAGE_CONFIG", str(tmp_path))
    with pytest.raises(nrules.RulesError, match=message):
        nrules.load_rules("broken")


def test_shipped_rule_files_validate() -> None:
    for name in nrules.available_rule_sets():
        rs = nrules.load_rules(name)
        for side in ("R", "L"):
            assert sorted(rs.table[side]) == sorted(ALL)


@pytest.mark.parametrize(("rule_set", "side"), list(EXPECTED))
def test_weak_label_groups(rule_set: str, side: str) -> None:
    groups = nrules.weak_label_groups(side, rule_set)
    table = EXPECTED[(rule_set, side)]
    for group, cat in (("G1", "N1"), ("G2", "N2"), ("G3", "N3")):
        assert set(groups[group]) == {s for s, c in table.items() if c == cat}
    assert set(groups["G1"]) == {f"10{side}", f"11{side}"}  # ipsilateral hilar


def test_weak_label_groups_need_a_side() -> None:
    with pytest.raises(ValueError, match="tumour side"):
        nrules.weak_label_groups(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n_stage", "g3", "g2", "g1"),
    [  # clinical-rules.md section 3
        ("N0", 0, 0, 0),
        ("N1", 0, 0, 1),
        ("N2", 0, 1, None),
        ("N2a", 0, 1, None),
        ("N2b", 0, 1, None),
        ("N3", 1, None, None),
    ],
)
def test_group_targets(n_stage: str, g3: int, g2: int | None, g1: int | None) -> None:
    assert nrules.group_targets(n_stage) == {"G1": g1, "G2": g2, "G3": g3}


def test_group_targets_reject_unknown() -> None:
    for bad in ("N+", "N4", "cN2"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            nrules.group_targets(bad)


def test_n2_count_constraint() -> None:
    assert nrules.n2_count_constraint("N2a") == (1, 1)
    assert nrules.n2_count_constraint("N2b") == (2, None)
    for other in ("N0", "N1", "N2", "N3", "N+"):
        assert nrules.n2_count_constraint(other) is None


def test_weak_labels_agree_with_staging() -> None:
    """A staged patient's positive stations satisfy the weak labels of its own stage."""
    for positive in (["10R"], ["4R"], ["4R", "7", "11R"], ["2L", "7"], []):
        n = nrules.stage(positive, "R")
        groups = nrules.weak_label_groups("R")
        for g, target in nrules.group_targets(n.tnm9).items():
            hit = int(any(s in groups[g] for s in positive))
            assert target is None or hit == target
        bounds = nrules.n2_count_constraint(n.tnm9)
        if bounds:
            lo, hi = bounds
            assert lo <= len(n.n2) and (hi is None or len(n.n2) <= hi)
