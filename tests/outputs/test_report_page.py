"""The one-page report (nstage.outputs.report): a valid one-page A4 PDF and PNG with the N stage, station
table and notices; station outlines coloured by call; radiological orientation of the images.

All cases are small arrays built here (no study, no registration)."""

from __future__ import annotations

import json

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.outputs.report import (
    ReportHeader,
    header_from_dataset,
    images,
    load_style,
    model_notice,
    render_report,
)
from nstage.outputs.report.page import MARGIN_IN
from nstage.stations import load_stations

LABEL = {s.station: s.label for s in load_stations()}
NAMES = {s.label: s.station for s in load_stations()}
HOT = (-60.0, 0.0, 0.0)  # LPS: x < 0 is the patient's right
SYNTHETIC_PHRASE = "TRAINED ON SYNTHETIC DATA"
RULE_PHRASE = "NO TRAINED MODEL"
PATIENT_MODEL = {"name": "station-cnn", "version": "1.0", "kind": "3D CNN", "training_data": "patients, hospital A (n=300)"}
SYNTHETIC_MODEL = {"name": "station-cnn", "version": "0.2", "kind": "3D CNN", "training_data": "synthetic cohort (nstage synth)"}
RULE_MODEL = {"name": "suvmax-baseline", "version": "0.1.0", "kind": "SUVmax baseline in the classifier slot",
              "training_data": "none (rule, not trained)", "probability": "a monotone score, not a calibrated probability"}

needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdfinfo") is None,
                                   reason="poppler-utils (pdftotext, pdfinfo) not installed")


def field_on(grid: Grid, f) -> np.ndarray:
    """Evaluate f(x, y, z) (LPS mm) at every voxel centre of `grid`: a [k, j, i] array."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    p = grid.index_to_lps(np.stack([i, j, k], axis=-1).astype(float))
    return f(p[..., 0], p[..., 1], p[..., 2])


def make_case(hot=HOT, flip_x: bool = False):
    """CT (body ellipse), SUV (background 1, hot sphere of SUV 12 at `hot`), stations 4R around the
    hot spot, 4L mirrored on the left, 7 in the midline below. `flip_x`: grids whose i axis runs
    towards the patient's right (arrays then hold the mirrored content)."""
    d = np.diag([-1.0, 1.0, 1.0]) if flip_x else np.eye(3)
    ct_grid = Grid((40, 64, 64), (4.0, 4.0, 4.0), (126.0 if flip_x else -126.0, -126.0, -80.0), d)
    pet_grid = Grid((34, 52, 52), (5.0, 5.0, 5.0), (130.0 if flip_x else -130.0, -130.0, -85.0), d)
    body = lambda x, y, z: (x / 110.0) ** 2 + (y / 80.0) ** 2 <= 1.0
    hu = np.where(field_on(ct_grid, body), 0.0, -1000.0).astype(np.float32)
    hx, hy, hz = hot
    suv = field_on(pet_grid, lambda x, y, z: np.where(body(x, y, z), 1.0, 0.0)
                   + 11.0 * (((x - hx) ** 2 + (y - hy) ** 2 + (z - hz) ** 2) <= 10.0**2))
    box = lambda x0, x1, y0, y1, z0, z1: lambda x, y, z: (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1)
    stations = np.zeros(ct_grid.shape, np.uint8)
    for name, f in (("4R", box(-80, -40, -20, 20, -20, 20)), ("4L", box(40, 80, -20, 20, -20, 20)),
                    ("7", box(-15, 15, 0, 30, -60, -30))):
        stations[field_on(ct_grid, f)] = LABEL[name]
    return hu, ct_grid, suv.astype(np.float32), pet_grid, stations


def make_result(model=RULE_MODEL, side="R", registration="ok", malignant=("4R",)) -> dict:
    pts = {"4R": [-60.0, 0.0, 0.0], "4L": [60.0, 0.0, 0.0], "7": [0.0, 15.0, -45.0]}
    stations = {s: {"malignant": s in malignant, "probability": 0.97 if s in malignant else 0.08,
                    "suv_max": 12.0 if s == "4R" else 1.2, "suv_mean": 1.0, "suv_peak": 1.0, "volume_ml": 20.0,
                    "hottest_point_lps": p} for s, p in pts.items()}
    n = {"tnm8": "N2", "tnm9": "N2a"} if side else {"tnm8": "N+", "tnm9": "N+"}
    return {"app": {"name": "nstage", "version": "0.1.0"}, "tumour_side": side,
            "tumour_side_source": "auto" if side else "not found", "n_stage": n, "n_stage_reasons": [],
            "rule_set": "tnm", "stations": stations, "stations_missing": [],
            "registration": {"status": registration, "reasons": ["test reason"] if registration != "ok" else []},
            "model": model, "baseline": {}}


GRADE_WORDS = {1: "absent", 2: "below blood pool", 3: "equal to blood pool", 4: "above blood pool", 5: "far above blood pool"}


def node(centre, short_axis, suv_max, grade) -> dict:
    """A node dict as result.json holds it (nstage.analysis.nodes.Node.as_dict)."""
    return {"centre_lps": list(centre), "short_axis_mm": short_axis, "long_axis_mm": round(short_axis * 1.4, 1), "volume_ml": 1.2,
            "hu_mean": 35.0, "suv_max": suv_max, "suv_peak": round(0.8 * suv_max, 3), "blood_pool_ratio": None if grade is None else 1.5,
            "tumour_ratio": None, "calcified": False, "fat_containing": False, "low_density_centre": False, "visual_grade": grade,
            "visual_grade_text": GRADE_WORDS.get(grade, "not graded (no blood pool)"), "source": "ct"}


# 4R: the hot node, its centre off the station's hottest point (z = 8, not 0); 4L a small benign
# node, hotter than any other benign one; 7: its reading found no node.
INDEX_NODES = {"4R": node((-58.0, 2.0, 8.0), 14.2, 11.5, 5), "4L": node((60.0, 0.0, -15.0), 6.3, 1.4, 2), "7": None}


def with_nodes(result: dict, nodes: dict = INDEX_NODES) -> dict:
    """`result` with the node fields of result.json (index_node, nodes, node_candidates) per station."""
    for s, v in result["stations"].items():
        n = nodes.get(s)
        v.update(index_node=n, nodes=[n] if n else [], node_candidates=1 if n else 0)
    return result


FOUR_BASELINES = {
    "suvmax": {"name": "suvmax", "rule": "SUVmax >= 2.5", "stations": {}, "n_stage": {"tnm8": "N2", "tnm9": "N2a"}, "reasons": []},
    "blood_pool": {"name": "blood_pool", "rule": "SUVpeak > 1 x blood pool (1.71)", "stations": {}, "n_stage": {"tnm8": "N1", "tnm9": "N1"},
                   "reasons": []},
    "ct_size": {"name": "ct_size", "rule": "index node short axis >= 10 mm", "stations": {}, "n_stage": {"tnm8": "N3", "tnm9": "N3"},
                "reasons": []},
    "combined": {"name": "combined", "available": False,
                 "reason": "no blood pool: fewer blood voxels in the aorta region than min_volume_ml, so no visual grade can be given"},
}


HEADER = ReportHeader(patient_name="DOE, Jane", patient_id="PID-42", birth_date="1950-02-03", sex="F",
                      study_date="2026-01-02", accession_number="ACC7", study_description="PET-CT thorax")


@pytest.fixture(scope="module")
def case():
    return make_case()


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    p = tmp_path / "report.pdf"
    p.write_bytes(pdf)
    return subprocess.run(["pdftotext", str(p), "-"], check=True, capture_output=True, text=True).stdout


@needs_poppler
def test_pdf_is_one_a4_page_with_stage_stations_and_patient(case, tmp_path):
    files = render_report(HEADER, make_result(), *case)
    assert files.pdf.startswith(b"%PDF-")
    p = tmp_path / "r.pdf"
    p.write_bytes(files.pdf)
    info = subprocess.run(["pdfinfo", str(p)], check=True, capture_output=True, text=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M)
    assert "(A4)" in info
    text = pdf_text(files.pdf, tmp_path)
    for needle in ("TNM 8", "TNM 9", "N2", "N2a", "DOE, Jane", "PID-42", "ACC7", "4R", "4L", "11L", "right lung",
                   "found on the images", "malignant", "benign"):
        assert needle in text, needle


def test_png_is_a4_portrait_page(case):
    from PIL import Image

    files = render_report(HEADER, make_result(), *case)
    img = Image.open(io.BytesIO(files.png))
    style = load_style()
    w_in, h_in = style.page_size_in
    dpi = style.page["png_dpi"]
    assert abs(img.size[0] - w_in * dpi) <= 1 and abs(img.size[1] - h_in * dpi) <= 1
    assert img.size[1] > img.size[0]


def test_rendering_is_deterministic(case):
    a = render_report(HEADER, make_result(), *case)
    b = render_report(HEADER, make_result(), *case)
    assert a.pdf == b.pdf
    assert a.png == b.png


@pytest.mark.parametrize("model, synthetic, rule", [(SYNTHETIC_MODEL, True, False), (RULE_MODEL, False, True),
                                                    (PATIENT_MODEL, False, False)])
def test_model_notice_exactly_when_synthetic_or_rule(model, synthetic, rule):
    notice = model_notice(model) or ""
    assert (SYNTHETIC_PHRASE in notice) is synthetic
    assert (RULE_PHRASE in notice) is rule
    if synthetic or rule:
        assert "NOT FOR CLINICAL USE" in notice
    if synthetic:
        assert model["training_data"] in notice  # states what the training data was


@needs_poppler
@pytest.mark.parametrize("model, expected", [(SYNTHETIC_MODEL, SYNTHETIC_PHRASE), (PATIENT_MODEL, None)])
def test_synthetic_notice_on_the_page_only_when_it_applies(case, tmp_path, model, expected):
    text = " ".join(pdf_text(render_report(HEADER, make_result(model=model), *case).pdf, tmp_path).split())
    assert (SYNTHETIC_PHRASE in text) is (expected is not None)
    assert (RULE_PHRASE in text) is False


@needs_poppler
def test_caveats_for_suspect_registration_and_unknown_side(case, tmp_path):
    text = " ".join(pdf_text(render_report(HEADER, make_result(side=None, registration="suspect"), *case).pdf, tmp_path).split())
    assert "registration SUSPECT" in text
    assert "Tumour side unknown" in text and "N0 / N+" in text
    assert "N+" in text
    ok = " ".join(pdf_text(render_report(HEADER, make_result(), *case).pdf, tmp_path).split())
    assert "registration SUSPECT" not in ok and "Tumour side unknown" not in ok


@needs_poppler
def test_a_side_from_a_faint_lesion_says_so(case, tmp_path):
    # a side read from a faint lesion at the blood pool (docs/tumour-side.md) is one a reader should check
    faint = make_result()
    faint["tumour_side_detail"] = {"side": "R", "source": "auto", "faint": True}
    text = " ".join(pdf_text(render_report(HEADER, faint, *case).pdf, tmp_path).split())
    assert "Tumour side from a faint lung lesion, read above the blood pool" in text and "check the side" in text
    plain = " ".join(pdf_text(render_report(HEADER, make_result(), *case).pdf, tmp_path).split())
    assert "faint" not in plain and "found on the images" in plain


def table_row(text: str, station: str) -> list[str]:
    """The station table's cells after the region (pdftotext -layout keeps the table's rows)."""
    m = re.search(rf"(?m)^.*?\b{re.escape(station)} +([a-z][a-z ,()\u2026-]*?) {{2,}}(\S.*)$", text)
    assert m, f"no table row for {station}"
    return m.group(2).split()


def pdf_layout_text(pdf: bytes, tmp_path: Path) -> str:
    p = tmp_path / "layout.pdf"
    p.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(p), "-"], check=True, capture_output=True, text=True).stdout


def overlapping_words(pdf: bytes, tmp_path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Pairs of words whose boxes (their middle band of height) overlap, and words outside the page's margins."""
    p = tmp_path / "bbox.pdf"
    p.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-bbox", str(p), "-"], check=True, capture_output=True, text=True).stdout
    page = re.search(r'<page width="([\d.]+)" height="([\d.]+)"', out)
    w, h = float(page.group(1)), float(page.group(2))
    words = [(float(a), float(b), float(c), float(d), t) for a, b, c, d, t in
             re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', out)]
    pairs = []
    for n, a in enumerate(words):
        for b in words[n + 1:]:
            ha, hb = 0.3 * (a[3] - a[1]), 0.3 * (b[3] - b[1])
            if a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] + ha < b[3] - hb and b[1] + hb < a[3] - ha:
                pairs.append((a[4], b[4]))
    m = MARGIN_IN * 72.0 - 1.0  # pt, a point of tolerance
    outside = [t for x0, y0, x1, y1, t in words if x0 < m or x1 > w - m or y0 < 0 or y1 > h]
    return pairs, outside


@needs_poppler
def test_station_table_shows_index_node_short_axis_and_grade(case, tmp_path):
    result = with_nodes(make_result())
    result["baseline"] = json.loads(json.dumps(FOUR_BASELINES))
    result["baseline"]["suvmax"]["stations"] = {"4R": {"malignant": True}, "4L": {"malignant": False}, "7": {"malignant": True}}
    result["baseline"]["ct_size"]["stations"] = {"4R": {"malignant": True}, "4L": {"malignant": False}, "7": {"malignant": False}}
    files = render_report(HEADER, result, *case)
    text = pdf_layout_text(files.pdf, tmp_path)
    # cells after the region: short axis, grade, probability, SUVmax, baselines calling it malignant, call
    assert table_row(text, "4R") == ["14.2", "5", "0.97", "12.0", "SC", "malignant"]
    assert table_row(text, "4L") == ["6.3", "2", "0.08", "1.2", "-", "benign"]
    assert table_row(text, "7") == ["-", "-", "0.08", "1.2", "S", "benign"]  # no node found in station 7; SUVmax calls it
    assert table_row(text, "11L") == ["not", "found"]
    flat = " ".join(text.split())
    assert "Short axis" in flat and "Grade" in flat and "index node" in flat  # the legend says what the columns are
    assert "Baselines: the reader rules that call the station malignant" in flat
    assert "4R: node 14.2 mm, SUVmax 11.5, grade 5" in flat  # the first slice is the 4R node's
    # four baselines, the unavailable one with its reason
    for line in ("SUVmax >= 2.5: N2 / N2a (TNM 8 / 9)", "SUVpeak > 1 x blood pool (1.71): N1 / N1 (TNM 8 / 9)",
                 "index node short axis >= 10 mm: N3 / N3 (TNM 8 / 9)", "combined PET/CT: not available (no blood pool"):
        assert line in flat, line
    p = tmp_path / "nodes.pdf"
    p.write_bytes(files.pdf)
    info = subprocess.run(["pdfinfo", str(p)], check=True, capture_output=True, text=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.MULTILINE)
    pairs, outside = overlapping_words(files.pdf, tmp_path)
    assert not pairs and not outside, (pairs[:10], outside)


@needs_poppler
def test_grade_not_graded_and_results_without_node_fields(case, tmp_path):
    nodes = dict(INDEX_NODES, **{"4R": node((-58.0, 2.0, 8.0), 14.2, 11.5, None)})  # no blood pool: no grade
    text = pdf_layout_text(render_report(HEADER, with_nodes(make_result(), nodes), *case).pdf, tmp_path)
    assert table_row(text, "4R") == ["14.2", "n.g.", "0.97", "12.0", "malignant"]
    assert "n.g. not graded" in " ".join(text.split())
    # result.json before node reading: no node columns, the table as it was
    old = render_report(HEADER, make_result(), *case).pdf
    text = pdf_layout_text(old, tmp_path)
    assert table_row(text, "4R") == ["0.97", "12.0", "malignant"]
    assert table_row(text, "7") == ["0.08", "1.2", "benign"]
    assert "Short" not in text and "Grade" not in text and "n.g." not in text
    pairs, outside = overlapping_words(old, tmp_path)
    assert not pairs and not outside, (pairs[:10], outside)


def draw_alone(draw) -> np.ndarray:
    """Run `draw(ax)` on an axes filling a square figure; return the RGB pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    draw(ax)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(int), ax


def pixel_box(ax, x0, x1, y0, y1, rgb_shape) -> tuple[slice, slice]:
    """Rows and columns of the rendered image covering the data box (with a few pixels margin)."""
    pts = ax.transData.transform([[x0, y0], [x1, y1]])
    h = rgb_shape[0]
    c0, c1 = sorted(pts[:, 0])
    r0, r1 = sorted(h - pts[:, 1])
    return slice(max(0, int(r0) - 4), int(r1) + 5), slice(max(0, int(c0) - 4), int(c1) + 5)


def test_mip_station_outlines_follow_the_calls(case):
    hu, ct_grid, suv, pet_grid, stations = case
    style = load_style()
    smap = images.station_map(stations, ct_grid, 2.0)
    mip = images.coronal_mip(suv, pet_grid)
    calls = {LABEL["4R"]: True, LABEL["4L"]: False, LABEL["7"]: False}
    rgb, ax = draw_alone(lambda ax: images.draw_mip(ax, mip, smap, calls, NAMES, style))
    red = (rgb[..., 0] > rgb[..., 1] + 80) & (rgb[..., 0] > rgb[..., 2] + 80)
    blue = (rgb[..., 2] > rgb[..., 0] + 50) & (rgb[..., 2] > rgb[..., 1] + 10)
    r_rows, r_cols = pixel_box(ax, -80, -40, -20, 20, rgb.shape)  # 4R, projected: x and z
    l_rows, l_cols = pixel_box(ax, 40, 80, -20, 20, rgb.shape)  # 4L
    assert red[r_rows, r_cols].sum() > 40 and blue[r_rows, r_cols].sum() == 0
    assert blue[l_rows, l_cols].sum() > 40 and red[l_rows, l_cols].sum() == 0
    # the image lies under its outlines: the hot spot (in 4R) is the darkest part, inside the 4R box
    grey = rgb.sum(axis=-1)
    rows, cols = np.nonzero(grey <= grey.min() + 30)
    assert r_rows.start <= rows.mean() <= r_rows.stop and r_cols.start <= cols.mean() <= r_cols.stop
    # flip the calls: the colours follow
    calls = {LABEL["4R"]: False, LABEL["4L"]: True, LABEL["7"]: False}
    rgb, ax = draw_alone(lambda ax: images.draw_mip(ax, mip, smap, calls, NAMES, style))
    red = (rgb[..., 0] > rgb[..., 1] + 80) & (rgb[..., 0] > rgb[..., 2] + 80)
    assert red[l_rows, l_cols].sum() > 40 and red[r_rows, r_cols].sum() == 0


def test_station_names_on_the_mip_do_not_overlap(case):
    """Two malignant stations one behind the other (same x and z): their names are moved apart."""
    _hu, ct_grid, suv, pet_grid, stations = case
    stations = stations.copy()
    stations[field_on(ct_grid, lambda x, y, z: (x >= -80) & (x <= -40) & (y >= 25) & (y <= 40) & (np.abs(z) <= 12))] = LABEL["10R"]
    calls = {LABEL["4R"]: True, LABEL["10R"]: True, LABEL["4L"]: False, LABEL["7"]: False}
    smap = images.station_map(stations, ct_grid, 2.0)
    _, ax = draw_alone(lambda ax: images.draw_mip(ax, images.coronal_mip(suv, pet_grid), smap, calls, NAMES, load_style()))
    boxes = {t.get_text(): t.get_window_extent() for t in ax.texts if t.get_text() in ("4R", "10R")}
    assert set(boxes) == {"4R", "10R"}
    assert not boxes["4R"].overlaps(boxes["10R"])


@pytest.mark.parametrize("flip_x", [False, True])
def test_mip_shows_patient_right_on_image_left_and_head_up(flip_x):
    hu, ct_grid, suv, pet_grid, stations = make_case(hot=(-60.0, 0.0, 40.0), flip_x=flip_x)
    mip = images.coronal_mip(suv, pet_grid)
    rgb, _ = draw_alone(lambda ax: images.draw_mip(ax, mip, None, {}, NAMES, load_style()))
    grey = rgb.sum(axis=-1)
    rows, cols = np.nonzero(grey <= grey.min() + 30)  # inverted grey: the hot spot is the darkest
    h, w = grey.shape
    assert cols.mean() < 0.4 * w  # patient's right on the image's left
    assert rows.mean() < 0.5 * h  # superior (z = +40 of -80..+80) in the upper half


@pytest.mark.parametrize("flip_x", [False, True])
def test_axial_fusion_is_seen_from_the_feet(flip_x):
    hot = (-60.0, -40.0, 0.0)  # patient's right and anterior
    hu, ct_grid, suv, pet_grid, stations = make_case(hot=hot, flip_x=flip_x)
    style = load_style()
    sl = images.axial_slice(hu, ct_grid, suv, pet_grid, stations, images.snap_to_ct_slice(hot, ct_grid),
                            (-120.0, -120.0), (120.0, 120.0), 1.0)
    assert sl.suv.image.max() > 8.0  # the PET was resampled onto the plane through the hot spot
    rgb, _ = draw_alone(lambda ax: images.draw_axial(ax, sl, {}, NAMES, style))
    hot_px = (rgb[..., 0] > 180) & (rgb[..., 2] < 90) & (rgb[..., 1] > 40)  # hot colour map over grey CT
    rows, cols = np.nonzero(hot_px)
    h, w = hot_px.shape
    assert rows.size > 20
    assert cols.mean() < 0.45 * w  # patient's right on the image's left
    assert rows.mean() < 0.45 * h  # anterior up
    # marks drawn in mm land on the image: the arrow to the hottest point ends at the hot spot
    rgb, ax = draw_alone(lambda ax: images.draw_axial(ax, sl, {}, NAMES, style, mark_lps=[hot]))
    tip = ax.transData.transform([hot[:2]])[0]
    assert abs(tip[0] - cols.mean()) < 0.05 * w and abs((h - tip[1]) - rows.mean()) < 0.05 * h
    cyan = (rgb[..., 0] < 80) & (rgb[..., 1] > 180) & (rgb[..., 2] > 180)
    c_rows, c_cols = np.nonzero(cyan)
    assert c_rows.size > 5 and np.hypot(c_rows.mean() - rows.mean(), c_cols.mean() - cols.mean()) < 0.1 * w


def test_slices_through_positive_stations_or_station_7(case):
    hu, ct_grid, suv, pet_grid, stations = case
    smap = images.station_map(stations, ct_grid, 2.0)
    res = make_result(malignant=("4R", "4L", "7"))["stations"]
    res["4L"]["probability"] = 0.99
    picks = images.pick_slices(res, smap, LABEL, 3, 10.0, "7", ct_grid)
    # 4R and 4L lie at the same z: one slice shows both, the most probable first; 7 gets its own
    assert [p.stations for p in picks] == [("4L", "4R"), ("7",)]
    assert picks[0].point_lps == (60.0, 0.0, 0.0)
    assert len(images.pick_slices(res, smap, LABEL, 1, 10.0, "7", ct_grid)) == 1
    none = images.pick_slices(make_result(malignant=())["stations"], smap, LABEL, 3, 10.0, "7", ct_grid)
    assert len(none) == 1 and none[0].fallback
    assert -60.0 <= none[0].point_lps[2] <= -30.0 and abs(none[0].point_lps[0]) < 3.0  # inside station 7


def test_slices_centre_on_index_nodes_malignant_first(case):
    _hu, ct_grid, _suv, _pet_grid, stations = case
    smap = images.station_map(stations, ct_grid, 2.0)
    res = with_nodes(make_result(malignant=("4R",)))["stations"]
    picks = images.pick_slices(res, smap, LABEL, 3, 10.0, "7", ct_grid)
    # 4R (malignant) first, on its index node, not on its hottest point; then 4L's benign node; 7 has none
    assert [p.stations for p in picks] == [("4R",), ("4L",)]
    assert picks[0].point_lps == (-58.0, 2.0, 8.0) and picks[0].marks == ((-58.0, 2.0, 8.0),)
    assert picks[1].point_lps == (60.0, 0.0, -15.0) and not any(p.fallback for p in picks)
    # a benign node hotter than the malignant one still comes after it
    res["4L"]["index_node"] = node((60.0, 0.0, -15.0), 6.3, 20.0, 5)
    assert [p.stations for p in images.pick_slices(res, smap, LABEL, 3, 10.0, "7", ct_grid)] == [("4R",), ("4L",)]
    assert [p.stations for p in images.pick_slices(res, smap, LABEL, 1, 10.0, "7", ct_grid)] == [("4R",)]
    # a malignant station without an index node keeps its slice, through its hottest point
    res = with_nodes(make_result(malignant=("4R", "7")))["stations"]
    picks = images.pick_slices(res, smap, LABEL, 3, 10.0, "7", ct_grid)
    assert [p.stations for p in picks] == [("4R",), ("7",), ("4L",)]
    assert picks[1].point_lps == (0.0, 15.0, -45.0)
    # node reading that found no node anywhere: the slices of old (positive stations' hottest points)
    res = with_nodes(make_result(malignant=("4R",)), nodes={})["stations"]
    picks = images.pick_slices(res, smap, LABEL, 3, 10.0, "7", ct_grid)
    assert [p.stations for p in picks] == [("4R",)] and picks[0].point_lps == (-60.0, 0.0, 0.0)


def test_header_from_dicom_dataset():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientName = "DOE^JANE^Q"
    ds.PatientID = "123"
    ds.PatientBirthDate = "19500203"
    ds.PatientSex = "F"
    ds.StudyDate = "20260102"
    ds.AccessionNumber = "A1"
    ds.StudyDescription = "PET-CT"
    h = header_from_dataset(ds)
    assert h == ReportHeader("DOE, JANE Q", "123", "1950-02-03", "F", "2026-01-02", "A1", "PET-CT")
    assert header_from_dataset(Dataset()) == ReportHeader()


def test_mismatched_arrays_are_input_errors(case):
    hu, ct_grid, suv, pet_grid, stations = case
    with pytest.raises(InputError, match="station label map"):
        render_report(HEADER, make_result(), hu, ct_grid, suv, pet_grid, stations[:-1])
    with pytest.raises(InputError, match="result lacks"):
        render_report(HEADER, {"stations": {}}, hu, ct_grid, suv, pet_grid, stations)


@needs_poppler
def test_a_station_past_a_lower_operating_point_reads_suspicious(case, tmp_path):
    """Issue 42: the staging threshold decides the N stage; a station at or above the station or triage point but
    below staging is 'suspicious' in the table, the legend gives the thresholds, and the N stage at each point shows."""
    result = with_nodes(make_result())  # the fullest page: nodes, four baselines and the points' lines
    result["baseline"] = json.loads(json.dumps(FOUR_BASELINES))
    result["model"] = {**RULE_MODEL, "operating_points": {"triage": 0.05, "station": 0.12, "staging": 0.30}}
    flags = {"4R": (True, True, True), "4L": (False, True, True), "7": (False, False, True)}
    for s, (staging, station, triage) in flags.items():
        result["stations"][s]["operating_points"] = {"triage": triage, "station": station, "staging": staging}
    result["stations"]["4L"]["probability"] = 0.2
    result["n_stage_at"] = {"triage": {"tnm8": "N3", "tnm9": "N3"}, "station": {"tnm8": "N3", "tnm9": "N3"},
                            "staging": {"tnm8": "N2", "tnm9": "N2a"}}
    files = render_report(HEADER, result, *case)
    text = pdf_layout_text(files.pdf, tmp_path)
    assert table_row(text, "4R")[-1] == "malignant"
    assert table_row(text, "4L")[-1] == "suspicious" and table_row(text, "7")[-1] == "suspicious"
    flat = " ".join(text.split())
    assert "suspicious: >= 0.05 (triage point, sens. 0.85) or 0.12 (station point, spec. 0.90) but < 0.30 (staging" in flat
    assert "Rule set: tnm; N at station point N3/N3, triage point N3/N3" in flat
    pairs, outside = overlapping_words(files.pdf, tmp_path)
    assert not pairs and not outside, (pairs[:10], outside)
    # a model without lower points (or without named points at all) reads malignant / benign only
    plain = with_nodes(make_result())
    assert table_row(pdf_layout_text(render_report(HEADER, plain, *case).pdf, tmp_path), "4L")[-1] == "benign"
    (tmp_path / "suspicious.png").write_bytes(files.png)
