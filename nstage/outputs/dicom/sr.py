"""Station findings and the N stage as a Comprehensive 3D SR, TID 1500 Measurement Report.

Content tree (codes from `config/dicom_output.json`):

- Imaging Measurements (TID 1500 row 6), one TID 1411 volumetric ROI group per station: tracking
  identifier and UID (the same as the SEG segment's), the referenced SEG segment, finding type
  Lymph node, finding site = the station's CID 7600 concept with laterality, the classifier's
  algorithm identification (on the probability), SUVbw maximum / mean / peak, volume in ml,
  probability of cancer, and a qualitative evaluation Malignant / Benign (at the staging operating
  point), with Yes / No for each other named operating point of the model (station, triage).
  A station with an index node (result ``stations.<name>.index_node``) is followed by a TID 1411
  group of that node: tracking identifier "station 4R index node" (its UID derived from the
  station's), region a Volume Surface POINT at the node centre in the CT's frame of reference,
  finding type Lymph node, finding site = the station (as above), and the node's short and long
  axis in the axial plane (SCT 103340004 / 103339001, CID 7470, in mm), SUVbw maximum and peak
  and volume (the station's codes). A group of its own keeps the station's SUVmax and the node's
  apart; TID 1501 (no region) cannot be used for the reason given below.
- Qualitative Evaluations (row 12, built here: highdicom has no slot for it): the N category as
  LOINC 21906-3 = SNOMED cN code, TNM 8 then TNM 9 (a category without a code, such as "N+" for
  an unknown tumour side, is TEXT); Finding = primary malignant neoplasm of lung with the tumour
  side as Laterality modifier (when known); a Comment naming editions, rule set, tumour side,
  the reasons, and the N stage at each other operating point. (A TID 1501 group for the tumour would be the other place, but pixelmed's
  validator applies TID 1411 to every group once one group references a segment.)

Evidence: the CT, the PET and the SEG instances (CurrentRequestedProcedureEvidenceSequence, all
in the source study).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as PydicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from nstage import __version__
from nstage.outputs.dicom.seg import SegmentPlan
from nstage.outputs.dicom.series import OutputSeries, coded, output_config
from nstage.stations import Station, by_name

QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
SIDE_WORDS = {"R": "right", "L": "left", None: "unknown"}


def _cfg() -> dict[str, Any]:
    return output_config()["sr"]


def device_observer() -> hd.sr.ObservationContext:
    """The app as the observing device (a UID stable for one name and version)."""
    eq = output_config()["equipment"]
    uid = generate_uid(entropy_srcs=[eq["manufacturer"], eq["manufacturer_model_name"], __version__])
    attrs = hd.sr.DeviceObserverIdentifyingAttributes(uid=uid, name=_cfg()["device_observer_name"], manufacturer_name=eq["manufacturer"],
                                                      model_name=eq["manufacturer_model_name"], serial_number=eq["device_serial_number"])
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(observer_type=codes.DCM.Device, observer_identifying_attributes=attrs))


def model_algorithm(result: Mapping[str, Any]) -> hd.sr.AlgorithmIdentification:
    """The station classifier as result["model"] names it (its kind, if given, as the parameter)."""
    model = result.get("model") or {}
    params = [str(model["kind"])] if model.get("kind") else None
    return hd.sr.AlgorithmIdentification(name=str(model.get("name", "unknown")), version=str(model.get("version", "unknown")), parameters=params)


def measurement_algorithm() -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name="nstage station measurements", version=__version__)


def _measurement(name: dict, value: float | None, unit: dict, derivation: dict | None = None,
                 algorithm: hd.sr.AlgorithmIdentification | None = None) -> hd.sr.Measurement | None:
    if value is None or not np.isfinite(float(value)):
        return None
    return hd.sr.Measurement(name=coded(name), value=float(value), unit=coded(unit), derivation=coded(derivation) if derivation else None,
                             algorithm_id=algorithm)


def station_measurements(values: Mapping[str, Any], model: hd.sr.AlgorithmIdentification) -> list[hd.sr.Measurement]:
    """SUVbw max/mean/peak, volume and probability of cancer of one station (absent values skipped).

    The measurements are of the group's region (the referenced segment, TID 1419); no image is
    named as their source. The PET series is listed in the evidence."""
    c = _cfg()
    algo = measurement_algorithm()
    items = [
        _measurement(c["suvbw"], values.get("suv_max"), c["suvbw_unit"], c["derivation"]["max"], algo),
        _measurement(c["suvbw"], values.get("suv_mean"), c["suvbw_unit"], c["derivation"]["mean"], algo),
        _measurement(c["suvbw"], values.get("suv_peak"), c["suvbw_unit"], c["derivation"]["peak"], algo),
        _measurement(c["volume"], values.get("volume_ml"), c["volume_unit"], None, algo),
        _measurement(c["probability"], values.get("probability"), c["probability_unit"], None, model),
    ]
    return [m for m in items if m is not None]


def station_site(station: Station) -> hd.sr.FindingSite:
    side = output_config()["laterality"].get(station.side)
    return hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept(station.code.value, station.code.scheme, station.code.meaning),
                             laterality=coded(side) if side else None)


def _fix_source_series_meaning(ref: hd.sr.ContentSequence) -> hd.sr.ContentSequence:
    """highdicom spells DCM 121232 "Source Series for Segmentation"; PS3.16 (and pydicom) say
    "Source series for segmentation", and pixelmed's validator warns about the difference."""
    for item in ref:
        concept = item.ConceptNameCodeSequence[0]
        if concept.CodeValue == codes.DCM.SourceSeriesForSegmentation.value:
            concept.CodeMeaning = codes.DCM.SourceSeriesForSegmentation.meaning
    return ref


def station_group(station: Station, values: Mapping[str, Any], seg: Dataset, segment_number: int, tracking_uid: str,
                  ct_series_uid: str, model: hd.sr.AlgorithmIdentification) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The TID 1411 group of one station, its region the station's SEG segment.

    The classifier's algorithm identification sits on the probability measurement (TID 300 has
    a slot for it; the group-level slot of newer TID 1411 editions is unknown to pixelmed 2022)."""
    c = _cfg()
    tracking = hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=output_config()["seg"]["tracking_id_format"].format(station=station.station))
    ref = hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=segment_number,
                                  source_series=hd.sr.SourceSeriesForSegmentation(ct_series_uid))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=_fix_source_series_meaning(ref),
        finding_type=coded(c["station_finding_type"]),
        finding_sites=[station_site(station)],
        measurements=station_measurements(values, model),
        qualitative_evaluations=station_evaluations(values) or None,
    )


def station_evaluations(values: Mapping[str, Any]) -> list[hd.sr.QualitativeEvaluation]:
    """Classification (Malignant / Benign at the staging point) and Yes / No for each other named operating point."""
    c = _cfg()
    if "malignant" not in values:
        return []
    call = c["call_values"]["malignant" if values.get("malignant") else "benign"]
    out = [hd.sr.QualitativeEvaluation(coded(c["call"]), coded(call))]
    points = c["operating_points"]
    for name, reached in (values.get("operating_points") or {}).items():
        if name in points and name not in ("yes", "no", "note"):
            out.append(hd.sr.QualitativeEvaluation(coded(points[name]), coded(points["yes" if reached else "no"])))
    return out


def node_algorithm() -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=_cfg()["index_node"]["algorithm_name"], version=__version__)


def index_node_measurements(node: Mapping[str, Any]) -> list[hd.sr.Measurement]:
    """Short and long axis (mm, axial plane), SUVbw max and peak and volume of one node (absent values skipped)."""
    c = _cfg()
    algo = node_algorithm()
    items = [
        _measurement(c["short_axis"], node.get("short_axis_mm"), c["length_unit"], None, algo),
        _measurement(c["long_axis"], node.get("long_axis_mm"), c["length_unit"], None, algo),
        _measurement(c["suvbw"], node.get("suv_max"), c["suvbw_unit"], c["derivation"]["max"], algo),
        _measurement(c["suvbw"], node.get("suv_peak"), c["suvbw_unit"], c["derivation"]["peak"], algo),
        _measurement(c["volume"], node.get("volume_ml"), c["volume_unit"], None, algo),
    ]
    return [m for m in items if m is not None]


def index_node_tracking_uid(station_tracking_uid: str) -> str:
    """The index node's tracking UID: derived from the station's, so one SR run names both consistently."""
    return generate_uid(entropy_srcs=[station_tracking_uid, "index node"])


def index_node_group(station: Station, node: Mapping[str, Any], station_tracking_uid: str, frame_of_reference_uid: str,
                     ct_series_uid: str) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The TID 1411 group of a station's index node; its region the node centre (Volume Surface POINT, LPS mm)."""
    centre = np.asarray(node.get("centre_lps", ()), dtype=float).reshape(-1)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ValueError(f"station {station.station}: index_node.centre_lps must be three finite numbers, not {node.get('centre_lps')!r}")
    surface = hd.sr.VolumeSurface(graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=centre[None, :],
                                  frame_of_reference_uid=frame_of_reference_uid,
                                  source_series=hd.sr.SourceSeriesForSegmentation(ct_series_uid))
    c = _cfg()
    tracking = hd.sr.TrackingIdentifier(uid=index_node_tracking_uid(station_tracking_uid),
                                        identifier=c["index_node"]["tracking_id_format"].format(station=station.station))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_volume_surface=_fix_source_series_meaning(surface),
        finding_type=coded(c["station_finding_type"]),
        finding_sites=[station_site(station)],
        measurements=index_node_measurements(node),
    )


def tumour_item(side: str | None) -> hd.sr.CodeContentItem | None:
    """Finding = primary malignant neoplasm of lung, with the tumour side as a Laterality modifier
    (TID 1500 rows 13 / 13b); None when the side is unknown (the Comment says so)."""
    c = _cfg()
    lat = output_config()["laterality"].get(side) if side else None
    if lat is None:
        return None
    item = hd.sr.CodeContentItem(name=codes.DCM.Finding, value=coded(c["primary_tumour"]), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    item.ContentSequence = hd.sr.ContentSequence([
        hd.sr.CodeContentItem(name=codes.SCT.Laterality, value=coded(lat), relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD)])
    return item


def n_stage_item(category: str) -> hd.sr.ContentItem:
    """LOINC 21906-3 = the SNOMED cN concept; TEXT when the category has no code (e.g. "N+")."""
    c = _cfg()
    code = c["n_category_values"].get(category)
    if code is None:
        return hd.sr.TextContentItem(name=coded(c["n_category"]), value=category, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    return hd.sr.CodeContentItem(name=coded(c["n_category"]), value=coded(code), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def n_stage_comment(result: Mapping[str, Any]) -> str:
    n = result.get("n_stage") or {}
    side = result.get("tumour_side")
    source = result.get("tumour_side_source")
    text = (f"N stage TNM 8th edition: {n.get('tnm8')}; TNM 9th edition: {n.get('tnm9')}. Rule set: {result.get('rule_set')}. "
            f"Tumour side: {SIDE_WORDS.get(side, side)}" + (f" ({source})" if source else "") + ".")
    if (result.get("tumour_side_detail") or {}).get("faint"):
        text += " The side comes from a faint lung lesion read above the blood pool (no lesion with lung around it reached the avidity threshold)."
    reasons = result.get("n_stage_reasons") or []
    if reasons:
        text += " Reasons: " + "; ".join(str(r) for r in reasons)
    thresholds = (result.get("model") or {}).get("operating_points") or {}
    at = {k: v for k, v in (result.get("n_stage_at") or {}).items() if k != "staging"}
    if at:
        text += " Operating points (station probability at or above): " + "; ".join(
            f"{name} {float(thresholds[name]):.3f}: N stage {n.get('tnm8')} / {n.get('tnm9')}" if name in thresholds
            else f"{name}: N stage {n.get('tnm8')} / {n.get('tnm9')}" for name, n in at.items()) + " (TNM 8 / 9; the N stage above is at staging)."
    return text


def qualitative_evaluations(result: Mapping[str, Any]) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: N category (TNM 8, TNM 9), the primary tumour's side and a Comment."""
    n = result.get("n_stage") or {}
    box = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    items: list[hd.sr.ContentItem] = [n_stage_item(str(n.get("tnm8"))), n_stage_item(str(n.get("tnm9")))]
    tumour = tumour_item(result.get("tumour_side"))
    if tumour is not None:
        items.append(tumour)
    items.append(hd.sr.TextContentItem(name=coded(_cfg()["comment"]), value=n_stage_comment(result), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    box.ContentSequence = hd.sr.ContentSequence(items)
    return box


def build_report(ct_headers: Sequence[Dataset], pet_headers: Sequence[Dataset], seg: Dataset, plan: SegmentPlan,
                 tracking_uids: Mapping[str, str], result: Mapping[str, Any], series: OutputSeries) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 SR of ``result`` (the dict `nstage run` writes as result.json).

    Every station of ``result`` must have a segment in ``seg`` (the pipeline measures exactly
    the stations present in the label map)."""
    stations = by_name()
    unknown = sorted(set(result.get("stations", {})) - set(stations))
    if unknown:
        raise ValueError(f"result names station(s) {unknown} that atlas/stations.json does not define")
    without_segment = sorted(s for s in result.get("stations", {}) if plan.number_of(s) is None)
    if without_segment:
        raise ValueError(f"result holds station(s) {without_segment} that have no voxel in the station label map")
    model = model_algorithm(result)
    ct_series = ct_headers[0].SeriesInstanceUID
    groups: list[Any] = []
    for st in stations.values():  # station-table order
        values = result.get("stations", {}).get(st.station)
        if values is None:
            continue
        number = plan.number_of(st.station)
        assert number is not None
        groups.append(station_group(st, values, seg, number, tracking_uids[st.station], ct_series, model))
        node = values.get("index_node")  # absent in result.json before node reading; None: no node found
        if isinstance(node, Mapping):
            groups.append(index_node_group(st, node, tracking_uids[st.station], ct_headers[0].FrameOfReferenceUID, ct_series))
    if not groups:
        raise ValueError("the result holds no station: nothing to report")
    report = hd.sr.MeasurementReport(observation_context=device_observer(), procedure_reported=coded(_cfg()["procedure_reported"]),
                                     imaging_measurements=groups, title=coded(_cfg()["title"]))
    report[0].ContentSequence.append(qualitative_evaluations(result))
    evidence = [*ct_headers, *pet_headers, seg]
    sr = hd.sr.Comprehensive3DSR(evidence=evidence, content=report[0], is_complete=True, **series.highdicom_kwargs())
    sr.CodingSchemeIdentificationSequence = private_coding_schemes()
    return sr


def private_coding_schemes() -> PydicomSequence:
    """The private coding scheme of the operating-point concepts, identified as PS3.3 C.12.1.1.2 asks."""
    out = []
    for designator, scheme in _cfg()["private_coding_schemes"].items():
        item = Dataset()
        item.CodingSchemeDesignator = designator
        item.CodingSchemeName = scheme["name"]
        item.CodingSchemeResponsibleOrganization = scheme["responsible_organization"]
        out.append(item)
    return PydicomSequence(out)
