"""The label app's own logic that needs no server: review priority and the segment-name table (label_app/nstage_label/work.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nstage.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "label_app"))
from nstage_label.work import name_table, review_priority


def _result(status: str, probs: dict[str, float]) -> dict:
    return {"registration": {"status": status, "reasons": [] if status == "ok" else ["x"]},
            "stations": {s: {"probability": p} for s, p in probs.items()}}


def test_suspect_registration_outranks_any_uncertainty_and_uncertainty_orders_equals() -> None:
    sure_suspect = review_priority(_result("suspect", {"7": 0.01, "4R": 0.99}))
    unsure_ok = review_priority(_result("ok", {"7": 0.5, "4R": 0.9}))
    sure_ok = review_priority(_result("ok", {"7": 0.05, "4R": 0.97}))
    assert sure_suspect["priority"] > unsure_ok["priority"] > sure_ok["priority"]
    assert unsure_ok["most_uncertain_station"] == "7" and unsure_ok["uncertainty"] == 1.0
    assert review_priority(_result("failed", {}))["priority"] > sure_suspect["priority"]


@pytest.fixture
def label_file(tmp_path: Path) -> Path:
    a = np.zeros((4, 4, 4), np.uint8)
    a[0, 0, 0], a[1, 1, 1], a[2, 2, 2] = 3, 5, 9
    p = tmp_path / "l.nii.gz"
    nib.save(nib.Nifti1Image(a, np.eye(4)), p)
    return p


def test_segments_are_named_by_idx_by_position_or_by_object(label_file: Path) -> None:
    assert name_table({"label_info": [{"name": "7", "idx": 9}, {"name": "4R", "idx": 3}]}, label_file) == {9: "7", 3: "4R"}
    # without idx: the i-th entry names the i-th smallest value in the file (3, 5, 9)
    assert name_table([{"name": "11L"}, {"name": "background"}, {"name": "2R"}], label_file) == {3: "11L", 9: "2R"}
    assert name_table('{"10R": 5}', label_file) == {5: "10R"}


def test_a_segment_not_named_as_a_station_is_refused(label_file: Path) -> None:
    with pytest.raises(InputError, match="Segment_1"):
        name_table([{"name": "Segment_1", "idx": 3}], label_file)
