"""Station atlas: the shipped default atlas, its reproducible build, external atlases, label fusion."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nstage import paths
from nstage.errors import InputError
from nstage.geometry import Grid, load_nifti, resample, save_nifti
from nstage.stationmap.atlas import load_atlases, read_name_table, renumber
from nstage.stationmap.label_fusion import majority_vote
from nstage.stations import by_name, load_stations
from nstage.synth.reference_atlas import (
    build_default_atlas,
    load_build_settings,
    render_atlas,
)

REPO = Path(__file__).resolve().parents[2]
ALL_LABELS = {s.label for s in load_stations()}


def test_shipped_atlas_is_complete_small_and_looks_like_a_ct() -> None:
    folder = paths.atlas_dir()
    (atlas,) = load_atlases([folder])
    assert {int(v) for v in np.unique(atlas.labels) if v} == ALL_LABELS
    for f in (folder / "reference").iterdir():
        assert f.stat().st_size < 4_000_000, f"{f} is too big to commit"
    assert max(atlas.ct_grid.spacing) <= 2.0 and max(atlas.label_grid.spacing) <= 1.0
    hu_at_labels = resample(atlas.ct, atlas.ct_grid, atlas.label_grid, order=0, fill=-1000.0)[atlas.labels > 0]
    assert -200 < np.median(hu_at_labels) < 50  # stations lie in mediastinal fat and soft tissue
    assert np.mean(hu_at_labels < -500) < 0.05  # not in lung (a little partial volume at the borders)
    assert atlas.ct.min() <= -990 and atlas.ct.max() >= 500  # air and bone
    for p in sorted((folder / "elastix").glob("*.txt")):
        assert "(Transform " in p.read_text()


def test_atlas_build_is_reproducible_and_complete(tmp_path: Path) -> None:
    coarse = replace(load_build_settings(), ct_spacing_mm=6.0, label_spacing_mm=3.0)
    a = render_atlas(coarse)
    b = render_atlas(coarse)
    assert np.array_equal(a.ct, b.ct) and np.array_equal(a.labels, b.labels)
    assert a.ct.dtype == np.int16 and a.labels.dtype == np.uint8
    assert {int(v) for v in np.unique(a.labels) if v} == ALL_LABELS
    hu = a.ct.astype(float)
    assert np.median(hu[hu < -500]) < -700  # lungs and air
    manifest = build_default_atlas(tmp_path / "atlas", coarse)
    (loaded,) = load_atlases([tmp_path / "atlas"])
    assert loaded.name == manifest["atlases"][0]["name"]
    assert np.array_equal(loaded.labels, a.labels)
    assert (tmp_path / "atlas" / "stations.json").exists()  # a new folder gets its own name table


@pytest.mark.slow
def test_shipped_atlas_matches_a_fresh_build(tmp_path: Path) -> None:
    """The committed atlas is what `nstage atlas build` makes now (rebuild it after generator changes)."""
    build_default_atlas(tmp_path / "atlas")
    for name in ("ct.nii.gz", "stations.nii.gz"):
        new, g_new = load_nifti(tmp_path / "atlas" / "reference" / name)
        old, g_old = load_nifti(paths.atlas_dir() / "reference" / name)
        assert np.array_equal(new, old) and np.allclose(g_new.affine, g_old.affine), f"atlas/{name} is stale: run nstage atlas build"


def _external_atlas(folder: Path, table_file: str, table_text: str) -> None:
    """A tiny atlas in another numbering: label 5 = 4R, label 9 = 7, label 3 = unlisted."""
    g = Grid((20, 24, 28), (4.0, 4.0, 4.0), (-56.0, -48.0, -40.0))
    ct = np.full(g.shape, -1000, np.int16)
    ct[2:18, 3:21, 3:25] = 40
    labels = np.zeros(g.shape, np.uint8)
    labels[5:8, 8:12, 8:12] = 5
    labels[10:13, 8:12, 14:18] = 9
    labels[14:16, 5:7, 5:7] = 3
    folder.mkdir(parents=True)
    save_nifti(ct, g, folder / "ct.nii.gz")
    save_nifti(labels, g, folder / "labels.nii.gz")
    (folder / table_file).write_text(table_text)
    (folder / "atlas.json").write_text(json.dumps({"format": "nstage-atlas/1", "atlases": [
        {"name": f"ext-{table_file}", "ct": "ct.nii.gz", "labels": "labels.nii.gz", "names": table_file}]}))


@pytest.mark.parametrize("table_file, table_text", [
    ("names.json", '{"5": "4R", "9": "7"}'),
    ("names.csv", "label,station\n5,4R\n9,7\n"),
    ("stations.json", '[{"label": 5, "station": "4R"}, {"label": 9, "station": "7"}]'),
])
def test_external_atlas_is_renumbered_to_the_station_table(tmp_path: Path, table_file: str, table_text: str) -> None:
    _external_atlas(tmp_path / "ext", table_file, table_text)
    (atlas,) = load_atlases([tmp_path / "ext"])
    ours = by_name()
    assert set(np.unique(atlas.labels)) == {0, ours["4R"].label, ours["7"].label}
    assert (atlas.labels == ours["4R"].label).sum() == 3 * 4 * 4
    assert atlas.ct.dtype == np.float32


def test_bad_atlases_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="atlas.json"):
        load_atlases([tmp_path])
    _external_atlas(tmp_path / "unknown", "names.json", '{"5": "4X"}')
    with pytest.raises(InputError, match="unknown station name"):
        load_atlases([tmp_path / "unknown"])
    _external_atlas(tmp_path / "notct", "names.json", '{"5": "4R"}')
    ct, g = load_nifti(tmp_path / "notct" / "ct.nii.gz")
    save_nifti((ct > 0).astype(np.int16), g, tmp_path / "notct" / "ct.nii.gz")
    with pytest.raises(InputError, match="HU"):
        load_atlases([tmp_path / "notct"])
    (tmp_path / "t.csv").write_text("value,name\n1,4R\n")
    with pytest.raises(InputError, match="label,station"):
        read_name_table(tmp_path / "t.csv")


def test_renumber_drops_unlisted_labels() -> None:
    raw = np.array([[[0, 2, 7, 9]]])
    out = renumber(raw, {7: "1R", 9: "11L"})
    assert out.tolist() == [[[0, 0, by_name()["1R"].label, by_name()["11L"].label]]]


def test_majority_vote_takes_the_most_frequent_label_and_breaks_ties_by_order() -> None:
    a = np.array([1, 1, 2, 0, 3, 0, 5], np.uint8)
    b = np.array([1, 2, 2, 0, 0, 4, 6], np.uint8)
    c = np.array([2, 2, 0, 7, 0, 0, 7], np.uint8)
    fused = majority_vote([a, b, c])
    assert fused.tolist() == [1, 2, 2, 0, 0, 0, 5]  # last voxel: three-way tie -> first map
    assert majority_vote([c]).tolist() == c.tolist()
    assert majority_vote([a, b]).tolist() == [1, 1, 2, 0, 3, 0, 5]  # two maps: ties go to the first
    with pytest.raises(ValueError):
        majority_vote([a, b[:3]])


def test_atlas_check_command_lists_the_stations() -> None:
    out = subprocess.run([sys.executable, "-m", "nstage.cli", "atlas", "check", str(paths.atlas_dir())],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "17 stations" in out and "reference" in out
