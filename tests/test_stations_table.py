"""The station table `atlas/stations.json` against the contract and clinical-rules.md 1 and 5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nstage import stations as st

# Written from clinical-rules.md section 1 (station, name, zone, side) and section 5 (code).
EXPECTED = {
    "1R": ("low cervical, supraclavicular, sternal notch", "supraclavicular", "R", "76838003"),
    "1L": ("low cervical, supraclavicular, sternal notch", "supraclavicular", "L", "76838003"),
    "2R": ("upper paratracheal", "upper", "R", "127927006"),
    "2L": ("upper paratracheal", "upper", "L", "127927006"),
    "3A": ("prevascular", "upper", "M", "127930004"),
    "3P": ("retrotracheal", "upper", "M", "127931000"),
    "4R": ("lower paratracheal", "upper", "R", "127932007"),
    "4L": ("lower paratracheal", "upper", "L", "127932007"),
    "5": ("subaortic (aortopulmonary window)", "aortopulmonary", "L", "127938006"),
    "6": ("para-aortic", "aortopulmonary", "L", "127939003"),
    "7": ("subcarinal", "subcarinal", "M", "28330007"),
    "8": ("paraoesophageal (below carina)", "lower", "M", "127940001"),
    "9": ("pulmonary ligament", "lower", "M", "127941002"),
    "10R": ("hilar", "hilar", "R", "53074004"),
    "10L": ("hilar", "hilar", "L", "53074004"),
    "11R": ("interlobar", "hilar", "R", "127919002"),
    "11L": ("interlobar", "hilar", "L", "127919002"),
}


def test_raw_file_has_contract_shape() -> None:
    raw = json.loads(st.default_path().read_text())
    assert isinstance(raw, list) and len(raw) == 17
    for entry in raw:
        assert set(entry) == {"label", "station", "name", "zone", "side", "code"}
        assert set(entry["code"]) == {"value", "scheme", "meaning"}
        assert isinstance(entry["label"], int) and entry["side"] in ("R", "L", "M")


def test_seventeen_unique_stations_and_labels() -> None:
    table = st.load_stations()
    assert len(table) == 17
    assert sorted(s.label for s in table) == list(range(1, 18))
    assert set(st.station_names()) == set(EXPECTED)
    assert len(set(st.station_names())) == 17


@pytest.mark.parametrize("station", sorted(EXPECTED))
def test_station_entry(station: str) -> None:
    s = st.by_name()[station]
    name, zone, side, code = EXPECTED[station]
    assert (s.name, s.zone, s.side) == (name, zone, side)
    assert (s.code.value, s.code.scheme) == (code, "SCT")
    assert st.by_label()[s.label] == s


def test_codes_match_pydicom_cid_7600() -> None:
    codes = pytest.importorskip("pydicom.sr").codes
    cid = codes.CID7600
    bundled = {c.value: c for c in (getattr(cid, k) for k in dir(cid)) if hasattr(c, "value")}
    for s in st.load_stations():
        assert s.code.value in bundled, s.station
        assert s.code.scheme == bundled[s.code.value].scheme_designator
        assert s.code.meaning == bundled[s.code.value].meaning


def test_as_dict_round_trip() -> None:
    raw = json.loads(st.default_path().read_text())
    assert [s.as_dict() for s in st.load_stations()] == raw


def _entry(label: int, station: str, **change: object) -> dict[str, object]:
    e: dict[str, object] = {
        "label": label,
        "station": station,
        "name": "n",
        "zone": "z",
        "side": "M",
        "code": {"value": "1", "scheme": "SCT", "meaning": "m"},
    }
    e.update(change)
    return e


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_entry(1, "7"), _entry(1, "8")], "duplicate label 1"),
        ([_entry(1, "7"), _entry(2, "7")], "duplicate station '7'"),
        ([_entry(1, "7", side="X")], "unknown side 'X'"),
        ([{k: v for k, v in _entry(1, "7").items() if k != "zone"}], "missing key(s) zone"),
        ([_entry(1, "7", code={"value": "1"})], "code needs the keys"),
        ([_entry(0, "7")], "label must be a positive integer"),
        ({"7": 1}, "expected a non-empty JSON list"),
    ],
)
def test_broken_table_fails_precisely(tmp_path: Path, entries: object, message: str) -> None:
    path = tmp_path / "stations.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(st.StationTableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        st.load_stations(path)


def test_missing_table_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(st.StationTableError, match="cannot read"):
        st.load_stations(tmp_path / "nope.json")


def test_atlas_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stations.json").write_text(json.dumps([_entry(3, "7")]))
    monkeypatch.setenv("NSTAGE_ATLAS", str(tmp_path))
    assert st.station_names() == ("7",)
    assert st.by_label()[3].station == "7"
