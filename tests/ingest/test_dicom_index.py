"""DICOM folder index: recursive walk, any names, DICOMDIR, non-DICOM and non-image files, damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

from nstage.errors import InputError
from nstage.ingest.dicom_index import index_folder
from tests.study_factory import CT_GRID, PET_GRID, STUDY, write_phantom_study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_study(tmp_path_factory.mktemp("index") / "study")


def _text_sr(path: Path) -> None:
    """A Basic Text SR of the same study: a DICOM object without pixels."""
    ds = Dataset()
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = STUDY.study_uid, generate_uid(), "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def test_groups_series_of_a_nested_folder_with_any_file_names(study_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "export"
    ct_files = sorted((study_dir / "ct").iterdir())
    for n, src in enumerate(ct_files):  # scatter the CT over two levels, names without extension
        dest = root / ("a" if n % 2 else "b/c") / f"IM{n:05d}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    shutil.copytree(study_dir / "pet", root / "pet series")
    (root / "notes.txt").write_text("not dicom")
    (root / "b" / "empty").write_bytes(b"")
    (root / "b" / "noise.bin").write_bytes(bytes(range(256)) * 8)
    _text_sr(root / "report.dcm")
    shutil.copy(ct_files[0], root / "a" / "copy-of-first")  # the same SOP instance twice

    index = index_folder(root)
    assert {s.modality for s in index.series} == {"CT", "PT"}
    assert [len(s.instances) for s in index.by_modality("CT")] == [CT_GRID.shape[0]]
    assert [len(s.instances) for s in index.by_modality("PT")] == [PET_GRID.shape[0]]
    assert list(index.studies()) == [STUDY.study_uid]
    skipped = {p.path.name: p.reason for p in index.skipped}
    assert set(skipped) == {"notes.txt", "empty", "noise.bin", "report.dcm"}
    assert "not an image" in skipped["report.dcm"] and skipped["notes.txt"] == "not a DICOM file"
    assert index.broken == ()


def test_dicomdir_is_skipped_and_its_files_are_found(study_dir: Path, tmp_path: Path) -> None:
    fs = FileSet()
    for path in sorted((study_dir / "pet").iterdir()):
        fs.add(pydicom.dcmread(path))
    fs.write(tmp_path / "media")
    index = index_folder(tmp_path / "media")
    assert [s.modality for s in index.series] == ["PT"] and len(index.series[0].instances) == PET_GRID.shape[0]
    assert [p.path.name for p in index.skipped] == ["DICOMDIR"]
    assert "DICOMDIR" in index.skipped[0].reason


@pytest.mark.parametrize("keep", [300, 1500, -100], ids=["meta-only", "mid-header", "pixels-cut"])
def test_truncated_file_is_reported_as_broken(study_dir: Path, tmp_path: Path, keep: int) -> None:
    shutil.copytree(study_dir / "pet", tmp_path / "pet")
    victim = sorted((tmp_path / "pet").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:keep])
    index = index_folder(tmp_path / "pet")
    assert [b.path.name for b in index.broken] == [victim.name], index.broken
    assert "truncated" in index.broken[0].reason
    assert len(index.series[0].instances) == PET_GRID.shape[0] - 1


def test_missing_folder_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        index_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    index = index_folder(tmp_path / "empty")
    assert index.series == () and index.skipped == () and "no image series" in index.summary()


def test_series_label_names_number_description_and_uid(study_dir: Path) -> None:
    pet = index_folder(study_dir).by_modality("PT")[0]
    assert pet.label.startswith('series 3 "PET AC FDG (default)" (PT, ') and pet.series_uid in pet.label
    assert STUDY.patient_name not in pet.label and STUDY.patient_id not in pet.label
