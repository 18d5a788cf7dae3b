"""What the viewers get and give back, without a server: the station map as NRRD on the CT's DICOM grid, the
format a request asks for, segment names, and the check that refuses a reviewed map with its slices reversed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.outputs.nrrd import save_label_nrrd
from nstage.outputs.dicom.reviewed_seg import check_head_to_feet, station_of_segment
from nstage.stations import by_name

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "label_app"))
from nstage_label.work import MapFormat, name_table

ROTATED = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # columns: i, j, k in LPS


def test_nrrd_holds_the_array_in_slice_row_column_order_and_the_grid_in_lps(tmp_path: Path) -> None:
    import itk

    grid = Grid((3, 4, 5), (0.7, 0.8, 2.5), (-10.0, -20.0, 30.0), ROTATED)
    labels = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    save_label_nrrd(labels, grid, tmp_path / "m.nrrd")
    raw = (tmp_path / "m.nrrd").read_bytes()
    header, data = raw.split(b"\n\n", 1)
    assert b"encoding: raw" in header and b"space: left-posterior-superior" in header and b"sizes: 5 4 3" in header
    assert data == labels.tobytes()  # the order OHIF's panel copies into the CT volume: column fastest, then row, then slice
    back = itk.imread(str(tmp_path / "m.nrrd"))
    assert np.array_equal(itk.array_from_image(back), labels)
    assert np.allclose(np.asarray(back.GetOrigin()), grid.origin) and np.allclose(np.asarray(back.GetSpacing()), grid.spacing)
    assert np.allclose(itk.array_from_matrix(back.GetDirection()), ROTATED)
    save_label_nrrd(labels, grid, tmp_path / "z.nrrd", compress=True)
    assert b"encoding: gzip" in (tmp_path / "z.nrrd").read_bytes().split(b"\n\n", 1)[0]
    with pytest.raises(ValueError, match="fit uint8"):
        save_label_nrrd(labels.astype(np.uint16) + 300, grid, tmp_path / "x.nrrd")


def test_the_map_format_is_the_one_the_viewer_asks_for() -> None:
    ohif = MapFormat.of_request({"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False})
    assert (ohif.suffix, ohif.dtype, ohif.compress) == (".nrrd", "uint8", False)
    assert MapFormat.of_request({}) == MapFormat(".nii.gz", "uint8", True)
    assert MapFormat.of_request({"result_compress": "true", "result_extension": ".seg.nrrd"}).compress
    with pytest.raises(InputError, match="result_extension"):
        MapFormat.of_request({"result_extension": ".png"})


def test_segments_are_named_by_station_or_by_the_seg_writers_label(tmp_path: Path) -> None:
    assert station_of_segment("4R") == "4R"
    assert station_of_segment("7 subcarinal") == "7" and station_of_segment("10L  hilar") == "10L"
    assert station_of_segment("7 subcarinal node") is None and station_of_segment("Segment_1") is None
    import nibabel as nib

    a = np.zeros((4, 4, 4), np.uint8)
    a[0, 0, 0], a[1, 1, 1] = 3, 5
    nib.save(nib.Nifti1Image(a, np.eye(4)), tmp_path / "l.nii.gz")
    assert name_table([{"name": "4R lower paratracheal", "idx": 3}, {"name": "7", "idx": 5}], tmp_path / "l.nii.gz") == {3: "4R", 5: "7"}


def test_a_map_with_its_slices_reversed_is_refused() -> None:
    grid = Grid((20, 4, 4), (1.0, 1.0, 5.0), (0.0, 0.0, -100.0))  # k rises towards the head (LPS z)
    labels = np.zeros(grid.shape, np.uint8)
    labels[15:18] = 1  # 2R high
    labels[3:6, :2] = 2  # 7 low
    names = {1: "2R", 2: "7"}
    check_head_to_feet(labels, grid, names, "the map")
    with pytest.raises(InputError, match="reverse order"):
        check_head_to_feet(labels[::-1], grid, names, "the map")
    check_head_to_feet(labels[::-1], grid, {1: "2R"}, "the map")  # nothing to compare: no lower station
    assert by_name()["2R"].zone == "upper" and by_name()["7"].zone == "subcarinal"
