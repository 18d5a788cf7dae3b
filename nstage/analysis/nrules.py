"""N staging from positive lymph node stations, under a switchable station-to-N rule set.

The station-to-N tables live in `config/rules/<name>.json` (one table per tumour side);
this module only reads them. TNM 8th edition gives N0-N3; the 9th edition splits N2 into
N2a (one N2 station involved) and N2b (more than one). The highest category applies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from nstage import paths
from nstage.stations import Station, by_name, load_stations

CATEGORIES = ("N1", "N2", "N3")  # what one station can give, lowest first
TUMOUR_SIDES = ("R", "L")
SIDE_WORDS = {"R": "right", "L": "left"}
GROUPS = {"G1": "N1", "G2": "N2", "G3": "N3"}  # weak-label group -> station category
TNM9 = ("N0", "N1", "N2a", "N2b", "N3")
N_PLUS = "N+"  # the category when the tumour side is unknown
_SIDE_ALIASES = {"r": "R", "right": "R", "l": "L", "left": "L"}
_UNKNOWN_ALIASES = {"", "u", "unknown", "x"}


class RulesError(ValueError):
    """A rule set is missing or its file breaks the expected shape."""


@dataclass(frozen=True)
class RuleSet:
    """A station-to-N table per tumour side."""

    name: str
    description: str
    source: str
    table: Mapping[str, Mapping[str, str]]  # tumour side -> station -> "N1" | "N2" | "N3"

    def category(self, station: str, tumour_side: str) -> str:
        """The N category one positive station gives for a tumour on that side."""
        side = _require_side(tumour_side)
        if station not in self.table[side]:
            raise ValueError(f"unknown station {station!r} (rule set {self.name})")
        return self.table[side][station]

    def stations(self, tumour_side: str, category: str) -> tuple[str, ...]:
        """Stations giving `category` for a tumour on that side, in station-table order."""
        side = _require_side(tumour_side)
        return tuple(s for s, c in self.table[side].items() if c == category)


@dataclass(frozen=True)
class NStage:
    """The N category of one patient, with the reasons for it."""

    tnm8: str
    tnm9: str
    reasons: tuple[str, ...]
    rule_set: str
    tumour_side: str | None
    positive: tuple[str, ...] = ()
    n1: tuple[str, ...] = ()
    n2: tuple[str, ...] = ()
    n3: tuple[str, ...] = ()
    if_side: tuple[tuple[str, str, str], ...] = field(default=())  # (side, tnm8, tnm9)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (carries the contract's `tnm8` / `tnm9` keys)."""
        out: dict[str, Any] = {
            "tnm8": self.tnm8,
            "tnm9": self.tnm9,
            "rule_set": self.rule_set,
            "tumour_side": self.tumour_side,
            "positive": list(self.positive),
            "stations_by_category": {"N1": list(self.n1), "N2": list(self.n2), "N3": list(self.n3)},
            "reasons": list(self.reasons),
        }
        if self.if_side:
            out["if_side"] = {s: {"tnm8": a, "tnm9": b} for s, a, b in self.if_side}
        return out


def normalise_side(tumour_side: str | None) -> str | None:
    """Tumour side as R or L (also right, left); None when unknown; ValueError otherwise."""
    if tumour_side is None or tumour_side.strip().lower() in _UNKNOWN_ALIASES:
        return None
    side = _SIDE_ALIASES.get(tumour_side.strip().lower())
    if side is None:
        raise ValueError(f"unknown tumour side {tumour_side!r} (use R or L, or None if unknown)")
    return side


def _require_side(tumour_side: str | None) -> str:
    side = normalise_side(tumour_side)
    if side is None:
        raise ValueError("a tumour side (R or L) is needed here")
    return side


def available_rule_sets() -> tuple[str, ...]:
    """Names of the rule-set files in the config folder."""
    return tuple(sorted(p.stem for p in (paths.config_dir() / "rules").glob("*.json")))


def load_rules(name: str = "tnm") -> RuleSet:
    """Read and validate `config/rules/<name>.json` against the station table."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise RulesError(f"invalid rule set name {name!r}")
    path = paths.config_dir() / "rules" / f"{name}.json"
    if not path.is_file():
        avail = ", ".join(available_rule_sets()) or "none"
        raise RulesError(f"unknown rule set {name!r}: no file {path} (available: {avail})")
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns, name, load_stations())


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int, name: str, stations: tuple[Station, ...]) -> RuleSet:
    """Parse one version of a rules file against one version of the station table."""
    at = f"rule set {name} ({path})"
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RulesError(f"{at}: cannot parse ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("sides"), dict):
        raise RulesError(f"{at}: expected an object with a 'sides' object")
    if raw.get("name", name) != name:
        raise RulesError(f"{at}: file says name {raw['name']!r}, expected {name!r}")
    sides = raw["sides"]
    for side in sides:
        if side not in TUMOUR_SIDES:
            raise RulesError(f"{at}: unknown tumour side {side!r} (use R and L)")
    known = [s.station for s in stations]
    table: dict[str, Mapping[str, str]] = {}
    for side in TUMOUR_SIDES:
        if not isinstance(sides.get(side), dict):
            raise RulesError(f"{at}: no table for tumour side {side}")
        assigned: dict[str, str] = {}
        for cat, members in sides[side].items():
            if cat not in CATEGORIES:
                raise RulesError(f"{at}, side {side}: unknown category {cat!r} (use N1, N2, N3)")
            if not isinstance(members, list):
                raise RulesError(f"{at}, side {side}, {cat}: expected a list of stations")
            for st in members:
                if st not in known:
                    raise RulesError(f"{at}, side {side}, {cat}: unknown station {st!r}")
                if st in assigned:
                    raise RulesError(
                        f"{at}, side {side}: station {st} assigned twice ({assigned[st]} and {cat})"
                    )
                assigned[st] = cat
        missing = [s for s in known if s not in assigned]
        if missing:
            raise RulesError(f"{at}, side {side}: station(s) {', '.join(missing)} not assigned")
        table[side] = MappingProxyType({s: assigned[s] for s in known})
    return RuleSet(
        name=name,
        description=str(raw.get("description", "")),
        source=str(raw.get("source", "")),
        table=MappingProxyType(table),
    )


def _rules(rules: RuleSet | str) -> RuleSet:
    return rules if isinstance(rules, RuleSet) else load_rules(rules)


def station_category(station: str, tumour_side: str, rules: RuleSet | str = "tnm") -> str:
    """The N category ("N1" | "N2" | "N3") one positive station gives."""
    return _rules(rules).category(_check_stations([station])[0], tumour_side)


def _check_stations(positive: Iterable[str]) -> tuple[str, ...]:
    """Known station names, deduplicated, in station-table order."""
    table = by_name()
    wanted = set()
    for s in positive:
        if s not in table:
            raise ValueError(f"unknown station {s!r} (known: {', '.join(table)})")
        wanted.add(s)
    return tuple(s for s in table if s in wanted)


def _editions(n1: tuple[str, ...], n2: tuple[str, ...], n3: tuple[str, ...]) -> tuple[str, str]:
    """(TNM 8, TNM 9) categories from the stations in each category: the highest wins."""
    if n3:
        return "N3", "N3"
    if n2:
        return "N2", ("N2a" if len(n2) == 1 else "N2b")
    if n1:
        return "N1", "N1"
    return "N0", "N0"


def _reason(station: str, side: str, category: str, rules: RuleSet) -> str:
    st = by_name()[station]
    where = "midline" if st.side == "M" else ("ipsilateral" if st.side == side else "contralateral")
    return (
        f"{station} ({st.name}): {where}, {st.zone} zone -> {category} "
        f"(rule set {rules.name}, {SIDE_WORDS[side]} tumour)"
    )


def stage(
    positive: Iterable[str], tumour_side: str | None, rules: RuleSet | str = "tnm"
) -> NStage:
    """N category (TNM 8 and 9) of a patient from the names of the positive stations."""
    rs = _rules(rules)
    pos = _check_stations(positive)
    side = normalise_side(tumour_side)
    if side is None:
        return _stage_unknown_side(pos, rs)
    n1, n2, n3 = (tuple(s for s in pos if rs.category(s, side) == c) for c in CATEGORIES)
    tnm8, tnm9 = _editions(n1, n2, n3)
    reasons = [_reason(s, side, rs.category(s, side), rs) for s in pos]
    if not pos:
        reasons.append(f"no positive station -> N0 (rule set {rs.name}, {SIDE_WORDS[side]} tumour)")
    elif tnm8 == "N2":
        reasons.append(f"{len(n2)} N2 station(s) involved ({', '.join(n2)}) -> TNM 9 {tnm9}")
    if len({rs.category(s, side) for s in pos}) > 1:
        reasons.append(f"highest category applies -> {tnm8}")
    return NStage(tnm8, tnm9, tuple(reasons), rs.name, side, pos, n1, n2, n3)


def _span(values: list[str], order: tuple[str, ...]) -> str:
    """The range of categories in `values`, e.g. N2 or N2 to N3."""
    low, high = min(values, key=order.index), max(values, key=order.index)
    return low if low == high else f"{low} to {high}"


def _stage_unknown_side(pos: tuple[str, ...], rs: RuleSet) -> NStage:
    """Without a tumour side only N0 vs N+ can be told; report what each side would give."""
    if not pos:
        reason = f"no positive station -> N0 (rule set {rs.name}, tumour side unknown)"
        return NStage("N0", "N0", (reason,), rs.name, None)
    alts = tuple((s, r.tnm8, r.tnm9) for s, r in ((s, stage(pos, s, rs)) for s in TUMOUR_SIDES))
    span8 = _span([a[1] for a in alts], ("N0", *CATEGORIES))
    span9 = _span([a[2] for a in alts], TNM9)
    reasons = (
        f"tumour side unknown: positive station(s) {', '.join(pos)} -> N+ "
        "(laterality decides the N category; give the tumour side to stage)",
        f"range over both sides: TNM 8 {span8}, TNM 9 {span9} ("
        + "; ".join(f"{SIDE_WORDS[s]} tumour {a} / {b}" for s, a, b in alts)
        + f"; rule set {rs.name})",
    )
    return NStage(N_PLUS, N_PLUS, reasons, rs.name, None, pos, if_side=alts)


def weak_label_groups(tumour_side: str, rules: RuleSet | str = "tnm") -> dict[str, tuple[str, ...]]:
    """Stations pooled per weak-label group: G1 = N1, G2 = N2, G3 = N3 stations of the table."""
    rs = _rules(rules)
    return {g: rs.stations(tumour_side, cat) for g, cat in GROUPS.items()}


def group_targets(n_stage: str) -> dict[str, int | None]:
    """Weak-label target per group (1 = some station positive, 0 = all benign, None = unknown).

    The group of the patient's category is 1, higher groups are 0, lower groups unknown.
    """
    if n_stage not in ("N0", "N1", "N2", "N2a", "N2b", "N3"):
        raise ValueError(f"no weak labels for N stage {n_stage!r} (use N0, N1, N2, N2a, N2b, N3)")
    level = int(n_stage[1])
    return {
        g: (None if k < level else int(k == level))
        for g, k in ((g, CATEGORIES.index(c) + 1) for g, c in GROUPS.items())
    }


def n2_count_constraint(tnm9: str) -> tuple[int, int | None] | None:
    """(min, max) number of positive N2 stations a TNM 9 category implies (max None = open)."""
    return {"N2a": (1, 1), "N2b": (2, None)}.get(tnm9)
