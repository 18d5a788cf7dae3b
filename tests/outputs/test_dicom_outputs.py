"""DICOM outputs (SEG, TID 1500 SR, Encapsulated PDF) written for a real synthetic study.

One `small` case of the session cohort (tests/conftest.py) is loaded once; its true station map
(truth_stations.nii.gz) and a result dict built from truth.json, the station measurements and
the N rules stand in for the pipeline's output; its node readings (index nodes) come from
truth.json's nodes, station NO_NODE_STATION reading no node. The writer gets the CT files in reversed slice
order, so frame placement must come from geometry, not from list order. Every object written is
run through the validators (nstage.outputs.validators); any error fails, and only the warnings listed in
EXPLAINED_WARNINGS are tolerated.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from nstage import __version__
from nstage.analysis.measure import station_uptake
from nstage.analysis.nrules import stage
from nstage.errors import InputError
from nstage.geometry import load_nifti
from nstage.ingest.study import Study, load_study
from nstage.outputs.dicom import output_file_names, write_dicom_outputs
from nstage.outputs.dicom.series import output_config
from nstage.outputs.validators import ToolReport, ValidatorMissing, validate_file
from nstage.stations import by_label, by_name

CASE = "case_0001"  # seed 424242: right tumour, N2 / N2a, malignant 4R and 11R (both codes exercised)
SEG_BINARY = "1.2.840.10008.5.1.4.1.1.66.4"
SEG_LABELMAP = "1.2.840.10008.5.1.4.1.1.66.7"
PDF_SOP = "1.2.840.10008.5.1.4.1.1.104.1"
NO_NODE_STATION = "7"  # its node reading found nothing: index_node null, no node group in the SR
NODE_FIELDS = ("index_node", "nodes", "node_candidates")
GRADE_WORDS = {1: "absent", 2: "below blood pool", 3: "equal to blood pool", 4: "above blood pool", 5: "far above blood pool"}

# Warnings the validators give on correct objects, and why they are tolerated.
EXPLAINED_WARNINGS = {
    # dcmtk 3.6.7's VR checker cannot check multi-byte character sets; the SR keeps the source
    # study's SpecificCharacterSet (ISO_IR 192, UTF-8) so that patient names survive unchanged.
    "dsrdump": [r"The VR checker does not support this Specific Character Set"],
    # The operating-point concepts (issue 42) are codes of a private scheme, as PS3.16 section 8 allows
    # (a designator beginning "99"), identified in CodingSchemeIdentificationSequence; dciodvfy knows only
    # the designators PS3.16 defines.
    "dciodvfy": [r"Unrecognized defined term <99NSTAGE> for value 1 of attribute <Coding Scheme Designator>"],
    "DicomSRValidator": [
        # Qualitative evaluations inside a TID 1411 group (highdicom QualitativeEvaluation):
        # pixelmed 2022's compiled TID 1411 has no row for them; later editions of PS3.16 do.
        r'CODE \(278201002,SCT,"Classification"\): Content Item not in template',
        r'CODE \(OP-(STATION|TRIAGE),99NSTAGE,"Reaches the (station|triage) operating point"\): Content Item not in template',
        # TID 1500 row 13b (HAS CONCEPT MOD from CID 210, here Laterality) exists in pixelmed's
        # template, but its context-group table lacks CID 210, so the item never matches.
        r'CODE \(272741003,SCT,"Laterality"\): Content Item not in template',
    ],
}


def pdf_bytes() -> bytes:
    """A tiny real PDF page (the report's layout is made elsewhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    fig.text(0.1, 0.5, "nstage report test")
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    plt.close(fig)
    return buf.getvalue()


def result_from_truth(case_dir: Path, study: Study, labels: np.ndarray) -> dict[str, Any]:
    """A result.json-shaped dict: measured uptake, true calls, N stage from the rules."""
    truth = json.loads((case_dir / "truth.json").read_text())
    names = {k: s.station for k, s in by_label().items()}
    uptake = {names[k]: u for k, u in station_uptake(study.pet.array, study.pet.grid, labels, study.ct.grid).items()}
    calls = {s: bool(truth["stations"][s]["malignant"]) for s in uptake}
    n = stage([s for s, m in calls.items() if m], truth["tumour_side"], "tnm")
    points = {"triage": 0.1, "station": 0.5, "staging": 0.8}  # benign stations (0.15) reach triage only
    return {
        "tumour_side": truth["tumour_side"], "tumour_side_source": "images",
        "n_stage": {"tnm8": n.tnm8, "tnm9": n.tnm9}, "n_stage_reasons": list(n.reasons), "rule_set": "tnm",
        "n_stage_at": {"triage": {"tnm8": "N3", "tnm9": "N3"}, "station": {"tnm8": n.tnm8, "tnm9": n.tnm9}},
        "model": {"name": "test-model", "version": "9.9", "kind": "fixed test probabilities", "training_data": "none",
                  "operating_points": points},
        "stations": {s: {"malignant": calls[s], "probability": 0.85 if calls[s] else 0.15,
                         "operating_points": {k: (0.85 if calls[s] else 0.15) >= t for k, t in points.items()},
                         "suv_max": round(u.suv_max, 3),
                         "suv_mean": round(u.suv_mean, 3), "suv_peak": round(u.suv_peak, 3), "volume_ml": round(u.volume_ml, 2),
                         "hottest_point_lps": [round(v, 1) for v in u.hottest_point_lps]} for s, u in uptake.items()},
    }


def with_index_nodes(result: dict[str, Any], case_dir: Path) -> dict[str, Any]:
    """`result` with result.json's node fields per station, made from truth.json's nodes (the hottest
    first, the index node; centre, short and long axis as generated)."""
    truth = json.loads((case_dir / "truth.json").read_text())
    out = dict(result, stations={s: dict(v) for s, v in result["stations"].items()})
    for station, values in out["stations"].items():
        found = [] if station == NO_NODE_STATION else [n for n in truth["nodes"] if n["station"] == station]
        found.sort(key=lambda n: (-n["suv"], -n["short_axis_mm"]))
        nodes = []
        for n in found:
            grade = 4 if n["malignant"] else 2
            nodes.append({"centre_lps": [round(v, 1) for v in n["centre_lps"]], "short_axis_mm": round(n["short_axis_mm"], 1),
                          "long_axis_mm": round(n["long_axis_mm"], 1), "volume_ml": 0.6, "hu_mean": 38.0, "suv_max": round(n["suv"], 3),
                          "suv_peak": round(0.8 * n["suv"], 3), "blood_pool_ratio": None, "tumour_ratio": None,
                          "calcified": bool(n["calcified"]), "fat_containing": False, "low_density_centre": False,
                          "visual_grade": grade, "visual_grade_text": GRADE_WORDS[grade], "source": "ct"})
        values.update(index_node=nodes[0] if nodes else None, nodes=nodes, node_candidates=len(nodes))
    return out


def without_node_fields(result: dict[str, Any]) -> dict[str, Any]:
    """`result` as result.json read before node reading existed."""
    return dict(result, stations={s: {k: x for k, x in v.items() if k not in NODE_FIELDS} for s, v in result["stations"].items()})


class Written:
    """One study's inputs and the objects written for it."""

    def __init__(self, case_dir: Path, out: Path) -> None:
        self.study = load_study(case_dir / "dicom")
        labels, grid = load_nifti(case_dir / "truth_stations.nii.gz")
        assert grid.shape == self.study.ct.grid.shape and np.allclose(grid.affine, self.study.ct.grid.affine, atol=1e-3)
        self.labels = labels.astype(np.uint8)
        self.result = with_index_nodes(result_from_truth(case_dir, self.study, self.labels), case_dir)
        self.pdf = pdf_bytes()
        self.ct = [pydicom.dcmread(f, stop_before_pixels=True) for f in self.study.ct.files]
        self.pet = [pydicom.dcmread(f, stop_before_pixels=True) for f in self.study.pet.files]
        reversed_ct = list(reversed(self.study.ct.files))
        self.paths = write_dicom_outputs(reversed_ct, self.study.pet.files, self.labels, self.result, out / "binary", pdf_bytes=self.pdf)
        self.labelmap_paths = write_dicom_outputs(reversed_ct, self.study.pet.files, self.labels, self.result, out / "labelmap",
                                                  seg_type="LABELMAP", ct_grid=self.study.ct.grid)
        self.seg, self.sr, self.doc = (pydicom.dcmread(p) for p in self.paths)
        self.seg_labelmap = pydicom.dcmread(self.labelmap_paths[0])


@pytest.fixture(scope="module")
def written(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Written:
    return Written(small_cohort / CASE, tmp_path_factory.mktemp("dicom_out"))


@pytest.fixture(scope="module")
def validation(written: Written) -> dict[str, list[ToolReport]]:
    """Validator reports of every object written (pixelmed runs once, on the SR: ~1 min)."""
    try:
        return {p.name + ("/labelmap" if p in written.labelmap_paths else ""): validate_file(p) for p in [*written.paths, written.labelmap_paths[0]]}
    except ValidatorMissing as e:
        pytest.skip(f"validator not installed: {e}")


def segment_station(seg: Dataset) -> dict[int, str]:
    """Segment number -> station name, read from the tracking identifiers ("station 4R")."""
    return {int(d.SegmentNumber): d.TrackingID.split()[-1] for d in seg.SegmentSequence if int(d.SegmentNumber) > 0}


def labels_from_seg(path: Path, ct_in_slice_order: list[Dataset]) -> np.ndarray:
    seg = hd.seg.segread(path)
    numbers = seg.get_pixels_by_source_instance([h.SOPInstanceUID for h in ct_in_slice_order], combine_segments=True,
                                                assert_missing_frames_are_empty=True)
    lut = np.zeros(256, np.uint8)
    stations = by_name()
    for number, name in segment_station(seg).items():
        lut[number] = stations[name].label
    return lut[numbers]


def ct_sorted_by_position(headers: list[Dataset]) -> list[Dataset]:
    """CT headers sorted along the slice normal, independently of nstage.ingest.volumes."""
    iop = np.asarray(headers[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(headers, key=lambda h: float(np.dot(np.asarray(h.ImagePositionPatient, float), normal)))


# --- SEG ---------------------------------------------------------------------------------------

def test_volumes_carry_their_files_in_slice_order(written: Written) -> None:
    """nstage.ingest.volumes.Volume.files: the writer's source of CT / PET instances, k = 0 first."""
    for vol, headers in ((written.study.ct, written.ct), (written.study.pet, written.pet)):
        assert len(vol.files) == vol.grid.shape[0]
        positions = np.asarray([h.ImagePositionPatient for h in headers], float)
        assert np.allclose(positions, vol.grid.slice_positions(), atol=1e-3)
        assert {h.SeriesInstanceUID for h in headers} == {vol.series_uid}


@pytest.mark.parametrize("kind", ["BINARY", "LABELMAP"])
def test_seg_round_trips_voxel_for_voxel(written: Written, kind: str) -> None:
    path = written.paths[0] if kind == "BINARY" else written.labelmap_paths[0]
    back = labels_from_seg(path, ct_sorted_by_position(written.ct))
    assert back.shape == written.labels.shape
    assert np.array_equal(back, written.labels)


def test_seg_sop_class_and_empty_frames(written: Written) -> None:
    assert written.seg.SOPClassUID == SEG_BINARY and written.seg.SegmentationType == "BINARY"
    assert written.seg_labelmap.SOPClassUID == SEG_LABELMAP
    # BINARY: one frame per (slice, station) pair where the station has voxels; empty frames omitted
    expected = sum(int(np.any(written.labels == lab, axis=(1, 2)).sum()) for lab in np.unique(written.labels) if lab)
    assert int(written.seg.NumberOfFrames) == expected < written.labels.shape[0] * len(segment_station(written.seg))


def test_seg_segments_are_coded_per_station(written: Written) -> None:
    cfg = output_config()
    present = {by_label()[int(v)].station for v in np.unique(written.labels) if v}
    seg = written.seg
    assert set(segment_station(seg).values()) == present
    assert [int(d.SegmentNumber) for d in seg.SegmentSequence] == list(range(1, len(present) + 1))
    tracking_uids = set()
    for d in seg.SegmentSequence:
        st = by_name()[d.TrackingID.split()[-1]]
        assert d.SegmentLabel.startswith(st.station + " ")
        assert d.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
        prop = d.SegmentedPropertyTypeCodeSequence[0]
        assert (prop.CodeValue, prop.CodingSchemeDesignator) == (st.code.value, st.code.scheme)
        if st.side in ("R", "L"):
            mod = prop.SegmentedPropertyTypeModifierCodeSequence[0]  # nested inside the type code item
            assert mod.CodeValue == {"R": "24028007", "L": "7771000"}[st.side]
        else:
            assert "SegmentedPropertyTypeModifierCodeSequence" not in prop
        assert "SegmentedPropertyTypeModifierCodeSequence" not in d
        algo = d.SegmentationAlgorithmIdentificationSequence[0]
        assert algo.AlgorithmVersion == __version__
        assert algo.AlgorithmName == cfg["seg"]["algorithm"]["name"]
        assert algo.AlgorithmFamilyCodeSequence[0].CodeValue == cfg["seg"]["algorithm"]["family"]["value"]
        assert pydicom.uid.UID(d.TrackingUID).is_valid
        tracking_uids.add(d.TrackingUID)
    assert len(tracking_uids) == len(present)
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [written.study.ct.series_uid]
    assert seg.FrameOfReferenceUID == written.ct[0].FrameOfReferenceUID


# --- series / study attributes of every object -------------------------------------------------

def test_objects_are_new_series_of_the_source_study(written: Written) -> None:
    cfg = output_config()
    ct = written.ct[0]
    objects = {"seg": written.seg, "sr": written.sr, "pdf": written.doc}
    assert [p.name for p in written.paths] == list(output_file_names())
    series_uids = {ds.SeriesInstanceUID for ds in objects.values()} | {written.seg_labelmap.SeriesInstanceUID}
    assert len(series_uids) == 4 and not series_uids & {written.study.ct.series_uid, written.study.pet.series_uid}
    for kind, ds in objects.items():
        for kw in ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                   "AccessionNumber", "StudyID", "StudyDescription"):
            assert ds.get(kw) == ct.get(kw), (kind, kw)
        assert ds.SeriesNumber == cfg["series"][kind]["number"]
        assert ds.SeriesDescription == cfg["series"][kind]["description"]
        assert ds.Manufacturer == cfg["equipment"]["manufacturer"]
        assert ds.ManufacturerModelName == cfg["equipment"]["manufacturer_model_name"]
        assert ds.SoftwareVersions == __version__
        assert re.fullmatch(r"\d{8}", ds.ContentDate) and ds.ContentTime
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def _walk(ds: Dataset) -> Iterator[Dataset]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield item
                yield from _walk(item)


def referenced_uids(ds: Dataset) -> tuple[set[str], set[str], set[str]]:
    """SOP instance, series and study UIDs that ``ds`` points to (nested items only)."""
    sops, series, studies = set(), set(), set()
    for item in _walk(ds):
        if "ReferencedSOPInstanceUID" in item:
            sops.add(item.ReferencedSOPInstanceUID)
        if "SeriesInstanceUID" in item:
            series.add(item.SeriesInstanceUID)
        if "StudyInstanceUID" in item:
            studies.add(item.StudyInstanceUID)
        if item.get("ValueType") == "UIDREF" and item.ConceptNameCodeSequence[0].CodeValue == "121232":  # source series for segmentation
            series.add(item.UID)
    return sops, series, studies


def test_no_object_refers_to_a_uid_outside_the_study(written: Written) -> None:
    known_sops = {h.SOPInstanceUID for h in written.ct + written.pet} | {written.seg.SOPInstanceUID, written.sr.SOPInstanceUID}
    known_series = {written.study.ct.series_uid, written.study.pet.series_uid, written.seg.SeriesInstanceUID, written.sr.SeriesInstanceUID}
    for ds in (written.seg, written.sr, written.doc, written.seg_labelmap):
        sops, series, studies = referenced_uids(ds)
        assert sops and sops <= known_sops, ds.Modality
        assert series <= known_series, ds.Modality
        assert studies <= {written.study.ct.study_uid}, ds.Modality
    # the SR's evidence lists every CT and PET instance and the SEG
    evidence = {ref.ReferencedSOPInstanceUID for s in written.sr.CurrentRequestedProcedureEvidenceSequence
                for ser in s.ReferencedSeriesSequence for ref in ser.ReferencedSOPSequence}
    assert evidence == {h.SOPInstanceUID for h in written.ct + written.pet} | {written.seg.SOPInstanceUID}


# --- SR ----------------------------------------------------------------------------------------

def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []))


def _name(item: Dataset) -> str:
    return item.ConceptNameCodeSequence[0].CodeValue


def measurement_groups(sr: Dataset) -> list[Dataset]:
    imaging = next(i for i in _children(sr) if _name(i) == "126010")
    return [g for g in _children(imaging) if _name(g) == "125007"]


def tracking_id(group: Dataset) -> str:
    return next(i.TextValue for i in _children(group) if _name(i) == "112039")


def station_groups(sr: Dataset) -> list[Dataset]:
    return [g for g in measurement_groups(sr) if not tracking_id(g).endswith(" index node")]


def node_groups(sr: Dataset) -> dict[str, Dataset]:
    """Index node groups by station ("station 4R index node" -> "4R")."""
    return {tracking_id(g).split()[1]: g for g in measurement_groups(sr) if tracking_id(g).endswith(" index node")}


def num_values(group: Dataset) -> dict[tuple[str, str | None], tuple[float, str]]:
    """(concept code, derivation code or None) -> (value, unit code) of a group's NUM items."""
    nums = {}
    for i in _children(group):
        if i.ValueType != "NUM":
            continue
        deriv = [c.ConceptCodeSequence[0].CodeValue for c in _children(i) if _name(c) == "121401"]
        mv = i.MeasuredValueSequence[0]
        key = (_name(i), deriv[0] if deriv else None)
        assert key not in nums, f"{key} twice in group {tracking_id(group)!r}"
        nums[key] = (float(mv.NumericValue), mv.MeasurementUnitsCodeSequence[0].CodeValue)
    return nums


def test_sr_station_groups_carry_measurements_and_calls(written: Written) -> None:
    sr, cfg = written.sr, output_config()["sr"]
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    seg_uids = {d.TrackingUID: d.TrackingID for d in written.seg.SegmentSequence}
    seg_numbers = {v: k for k, v in segment_station(written.seg).items()}
    groups = station_groups(sr)
    assert len(groups) == len(written.result["stations"])
    for g in groups:
        items = _children(g)
        tracking = tracking_id(g)
        station = tracking.split()[-1]
        values = written.result["stations"][station]
        st = by_name()[station]
        assert seg_uids[next(i.UID for i in items if _name(i) == "112040")] == tracking  # the SEG's tracking UID
        ref = next(i for i in items if _name(i) == "121191").ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == written.seg.SOPInstanceUID
        assert int(ref.ReferencedSegmentNumber) == seg_numbers[station]
        site = next(i for i in items if _name(i) == "363698007")
        assert site.ConceptCodeSequence[0].CodeValue == st.code.value
        lat = [c.ConceptCodeSequence[0].CodeValue for c in _children(site) if _name(c) == "272741003"]
        assert lat == ({"R": ["24028007"], "L": ["7771000"]}.get(st.side, []))
        nums = num_values(g)
        assert ("103340004", None) not in nums  # the node's short axis is in the node's own group
        assert nums[("126401", "56851009")] == pytest.approx((values["suv_max"], "g/ml{SUVbw}"))
        assert nums[("126401", "373098007")] == pytest.approx((values["suv_mean"], "g/ml{SUVbw}"))
        assert nums[("118565006", None)] == pytest.approx((values["volume_ml"], "ml"))
        assert nums[("111047", None)] == pytest.approx((values["probability"], "1"))
        call = next(i for i in items if _name(i) == cfg["call"]["value"]).ConceptCodeSequence[0].CodeValue
        assert call == cfg["call_values"]["malignant" if values["malignant"] else "benign"]["value"]
        for point in ("station", "triage"):  # Yes / No per other operating point (issue 42)
            answer = next(i for i in items if _name(i) == cfg["operating_points"][point]["value"]).ConceptCodeSequence[0].CodeValue
            assert answer == cfg["operating_points"]["yes" if values["operating_points"][point] else "no"]["value"]
    assert any(v["malignant"] for v in written.result["stations"].values())
    assert not all(v["malignant"] for v in written.result["stations"].values())


def test_sr_index_nodes_have_groups_with_short_axis_and_suvmax(written: Written) -> None:
    """One TID 1411 group per station with an index node: short and long axis (SCT 103340004 /
    103339001, mm), SUVbw max and peak of the node, finding site the station, region the node centre."""
    sr, cfg = written.sr, output_config()["sr"]
    stations = written.result["stations"]
    with_node = {s for s, v in stations.items() if v["index_node"] is not None}
    assert NO_NODE_STATION in stations and NO_NODE_STATION not in with_node and len(with_node) >= 10
    groups = node_groups(sr)
    assert set(groups) == with_node
    station_uids = {tracking_id(g).split()[-1]: next(i.UID for i in _children(g) if _name(i) == "112040") for g in station_groups(sr)}
    seg_uids = {d.TrackingUID for d in written.seg.SegmentSequence}
    # the node groups follow their station's group, in station-table order
    order = [tracking_id(g) for g in measurement_groups(sr)]
    for s in with_node:
        assert order[order.index(f"station {s}") + 1] == f"station {s} index node"
    for station, g in groups.items():
        node, st = stations[station]["index_node"], by_name()[station]
        items = _children(g)
        uid = next(i.UID for i in items if _name(i) == "112040")
        assert pydicom.uid.UID(uid).is_valid and uid != station_uids[station] and uid not in seg_uids
        assert next(i for i in items if _name(i) == "121071").ConceptCodeSequence[0].CodeValue == cfg["station_finding_type"]["value"]
        site = next(i for i in items if _name(i) == "363698007")
        assert (site.ConceptCodeSequence[0].CodeValue, site.ConceptCodeSequence[0].CodingSchemeDesignator) == (st.code.value, st.code.scheme)
        lat = [c.ConceptCodeSequence[0].CodeValue for c in _children(site) if _name(c) == "272741003"]
        assert lat == ({"R": ["24028007"], "L": ["7771000"]}.get(st.side, []))
        nums = num_values(g)
        assert nums[("103340004", None)] == pytest.approx((node["short_axis_mm"], "mm"))
        assert nums[("103339001", None)] == pytest.approx((node["long_axis_mm"], "mm"))
        assert nums[("126401", "56851009")] == pytest.approx((node["suv_max"], "g/ml{SUVbw}"))
        assert nums[("126401", "126031")] == pytest.approx((node["suv_peak"], "g/ml{SUVbw}"))
        assert nums[("118565006", None)] == pytest.approx((node["volume_ml"], "ml"))
        concepts = {i.ConceptNameCodeSequence[0].CodeValue: i.ConceptNameCodeSequence[0] for i in items if i.ValueType == "NUM"}
        assert concepts["103340004"].CodingSchemeDesignator == "SCT" and concepts["103339001"].CodingSchemeDesignator == "SCT"
        surface = next(i for i in items if _name(i) == "121231")
        assert surface.ValueType == "SCOORD3D" and surface.GraphicType == "POINT"
        assert surface.ReferencedFrameOfReferenceUID == written.ct[0].FrameOfReferenceUID
        assert np.allclose([float(v) for v in surface.GraphicData], node["centre_lps"], atol=1e-3)
        assert not [i for i in items if _name(i) == "121191"]  # no SEG segment: the node is not in the SEG
    # case_0001's 4R is malignant: its index node (the hottest) is the metastasis (grade 4 in with_index_nodes)
    assert groups["4R"] is not None and stations["4R"]["index_node"]["visual_grade"] == 4


def test_sr_index_node_short_axis_reads_back_with_highdicom(written: Written) -> None:
    """highdicom's reader finds the node groups and their short axis as result.json has it."""
    report = hd.sr.srread(written.paths[1])
    found = {}
    for g in report.content.get_volumetric_roi_measurement_groups():
        if g.tracking_identifier.endswith(" index node"):
            (sa,) = g.get_measurements(name=codes.SCT.ShortAxis)
            (la,) = g.get_measurements(name=codes.SCT.LongAxis)
            assert sa.unit.value == "mm" and la.unit.value == "mm"
            found[g.tracking_identifier.split()[1]] = (sa.value, la.value)
    want = {s: (v["index_node"]["short_axis_mm"], v["index_node"]["long_axis_mm"])
            for s, v in written.result["stations"].items() if v["index_node"] is not None}
    assert found.keys() == want.keys()
    for s, values in want.items():
        assert found[s] == pytest.approx(values), s


def assert_valid_sr(path: Path) -> None:
    """dciodvfy, dcmdump and dsrdump find no error in an SR (pixelmed runs once, on the main SR)."""
    try:
        reports = validate_file(path, skip=("DicomSRValidator",))
    except ValidatorMissing as e:
        pytest.skip(f"validator not installed: {e}")
    assert all(r.ok for r in reports), "\n".join(r.summary() for r in reports)


def test_sr_of_a_result_without_node_fields(written: Written, tmp_path: Path) -> None:
    """A result.json written before node reading: one group per station, no node group."""
    old = without_node_fields(written.result)
    assert not any(k in v for v in old["stations"].values() for k in NODE_FIELDS)
    paths = write_dicom_outputs(written.study.ct.files, written.study.pet.files, written.labels, old, tmp_path)
    sr = pydicom.dcmread(paths[1])
    assert not node_groups(sr)
    assert len(measurement_groups(sr)) == len(old["stations"])
    assert_valid_sr(paths[1])


def test_sr_reports_n_stage_and_tumour_side(written: Written) -> None:
    cfg = output_config()["sr"]
    box = next(i for i in _children(written.sr) if _name(i) == "C0034375")
    items = _children(box)
    n_codes = [i.ConceptCodeSequence[0].CodeValue for i in items if _name(i) == "21906-3"]
    want = written.result["n_stage"]
    assert n_codes == [cfg["n_category_values"][want["tnm8"]]["value"], cfg["n_category_values"][want["tnm9"]]["value"]]
    assert want == {"tnm8": "N2", "tnm9": "N2a"}  # the case chosen: distinct TNM 8 and 9 codes
    tumour = next(i for i in items if _name(i) == "121071")
    assert tumour.ConceptCodeSequence[0].CodeValue == cfg["primary_tumour"]["value"]
    side = {"R": "24028007", "L": "7771000"}[written.result["tumour_side"]]
    assert [c.ConceptCodeSequence[0].CodeValue for c in _children(tumour)] == [side]
    comment = next(i.TextValue for i in items if _name(i) == "121106")
    assert "TNM 8th edition: N2" in comment and "TNM 9th edition: N2a" in comment and "tnm" in comment
    assert "triage 0.100: N stage N3 / N3" in comment and "station 0.500: N stage N2 / N2a" in comment


def test_sr_without_tumour_side_writes_n_plus_as_text(written: Written, tmp_path: Path) -> None:
    result = dict(written.result, tumour_side=None, n_stage={"tnm8": "N+", "tnm9": "N+"})
    paths = write_dicom_outputs(written.study.ct.files, written.study.pet.files, written.labels, result, tmp_path)
    sr = pydicom.dcmread(paths[1])
    items = _children(next(i for i in _children(sr) if _name(i) == "C0034375"))
    assert [(i.ValueType, i.TextValue) for i in items if _name(i) == "21906-3"] == [("TEXT", "N+"), ("TEXT", "N+")]
    assert not [i for i in items if _name(i) == "121071"]  # no tumour finding without a side
    assert_valid_sr(paths[1])


# --- Encapsulated PDF --------------------------------------------------------------------------

def test_pdf_wraps_the_given_bytes(written: Written) -> None:
    doc, cfg = written.doc, output_config()["pdf"]
    assert doc.SOPClassUID == PDF_SOP and doc.Modality == "DOC"
    assert doc.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(doc.EncapsulatedDocument)[: int(doc.EncapsulatedDocumentLength)] == written.pdf
    assert doc.DocumentTitle == cfg["document_title"]
    assert doc.ConceptNameCodeSequence[0].CodeValue == cfg["concept_name"]["value"]
    assert {s.ReferencedSOPInstanceUID for s in doc.SourceInstanceSequence} == {written.seg.SOPInstanceUID, written.sr.SOPInstanceUID}


def test_writer_rejects_bad_input(written: Written, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not match the CT grid"):
        write_dicom_outputs(written.study.ct.files, written.study.pet.files, written.labels[1:], written.result, tmp_path)
    with pytest.raises(ValueError, match="not a PDF"):
        write_dicom_outputs(written.study.ct.files, written.study.pet.files, written.labels, written.result, tmp_path, pdf_bytes=b"<html>")
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM")
    with pytest.raises(InputError, match="cannot be read as DICOM"):
        write_dicom_outputs([junk], written.study.pet.files, written.labels, written.result, tmp_path)
    with pytest.raises(ValueError, match="segmentation type"):
        write_dicom_outputs(written.study.ct.files, written.study.pet.files, written.labels, written.result, tmp_path, seg_type="FRACTIONAL")
    no_centre = dict(written.result, stations={**written.result["stations"],
                                               "4R": {**written.result["stations"]["4R"],
                                                      "index_node": {**written.result["stations"]["4R"]["index_node"], "centre_lps": None}}})
    with pytest.raises(ValueError, match=r"station 4R: index_node.centre_lps"):
        write_dicom_outputs(written.study.ct.files, written.study.pet.files, written.labels, no_centre, tmp_path)
    no_1r = np.where(written.labels == by_name()["1R"].label, 0, written.labels).astype(np.uint8)
    with pytest.raises(ValueError, match=r"\['1R'\] that have no voxel"):
        write_dicom_outputs(written.study.ct.files, written.study.pet.files, no_1r, written.result, tmp_path)
    assert not list(tmp_path.glob("*.dcm"))  # nothing is written when the input is bad


# --- validators --------------------------------------------------------------------------------

def test_every_object_passes_the_validators(validation: dict[str, list[ToolReport]]) -> None:
    ran = {(name, r.tool) for name, reports in validation.items() for r in reports}
    assert ("findings_sr.dcm", "DicomSRValidator") in ran and ("findings_sr.dcm", "dsrdump") in ran
    assert {("stations_seg.dcm", "dciodvfy"), ("report_pdf.dcm", "dciodvfy"), ("stations_seg.dcm/labelmap", "dcmdump")} <= ran
    problems = []
    for name, reports in validation.items():
        for r in reports:
            problems += [f"{name} {r.tool} error: {e}" for e in r.errors]
            allowed = EXPLAINED_WARNINGS.get(r.tool, [])
            problems += [f"{name} {r.tool} unexplained warning: {w}" for w in r.warnings if not any(re.search(a, w) for a in allowed)]
    assert not problems, "\n".join(problems)


def test_validators_report_errors(written: Written, tmp_path: Path) -> None:
    """The parsers see errors: a PDF object without its MIME type must fail dciodvfy."""
    bad = pydicom.dcmread(written.paths[2])
    del bad.MIMETypeOfEncapsulatedDocument
    bad.save_as(tmp_path / "bad.dcm")
    try:
        reports = validate_file(tmp_path / "bad.dcm")
    except ValidatorMissing as e:
        pytest.skip(f"validator not installed: {e}")
    dciodvfy = next(r for r in reports if r.tool == "dciodvfy")
    assert not dciodvfy.ok and any("MIMETypeOfEncapsulatedDocument" in e for e in dciodvfy.errors)


def test_the_sr_says_when_the_side_came_from_a_faint_lesion() -> None:
    # a side read at the blood pool (docs/tumour-side.md) is one a reader should check: the SR's N-stage comment says so
    from nstage.outputs.dicom.sr import n_stage_comment

    result = {"n_stage": {"tnm8": "N2", "tnm9": "N2a"}, "rule_set": "tnm", "tumour_side": "R", "tumour_side_source": "auto",
              "tumour_side_detail": {"faint": True}}
    assert "faint lung lesion read above the blood pool" in n_stage_comment(result)
    result["tumour_side_detail"]["faint"] = False
    assert "faint" not in n_stage_comment(result)
