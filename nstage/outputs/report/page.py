"""The one-page radiologist report (A4 portrait), rendered with matplotlib to PDF and PNG.

Top to bottom: title, notices (model trained on synthetic data / no trained model), patient and
study, the N stage in large type (TNM 8 and 9) with tumour side and rule set, caveats (atlas
registration not ok, tumour side unknown), a coronal PET MIP with station outlines beside the
station table (with the index node's short axis and visual grade when the result carries node
readings), axial CT/PET fusion slices centred on index nodes (malignant stations first; through
the positive stations' hottest points for results without nodes), the model and a footer.
All wording, colours and windows come from `config/report.json` (:mod:`nstage.outputs.report.style`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nstage import __version__
from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.outputs.report import images
from nstage.outputs.report.style import ReportConfigError, ReportStyle, load_style
from nstage.stations import Station, load_stations

MARGIN_IN = 0.45
GAP_IN = 0.12
MIP_W_IN = 2.85  # the coronal MIP's column; the station table takes the rest of the width
SIDE_WORDS = {"R": "right", "L": "left"}


@dataclass(frozen=True)
class ReportHeader:
    """Patient and study as printed on the report (strings as they should read; '' when unknown)."""

    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    accession_number: str = ""
    study_description: str = ""


@dataclass(frozen=True)
class ReportFiles:
    """The rendered page: a one-page PDF and a PNG of the same page."""

    pdf: bytes
    png: bytes


def _dicom_date(value: object) -> str:
    """DICOM DA (YYYYMMDD) as YYYY-MM-DD; other text unchanged."""
    s = str(value or "").strip()
    return f"{s[:4]}-{s[4:6]}-{s[6:8]}" if len(s) == 8 and s.isdigit() else s


def _person_name(value: object) -> str:
    """DICOM PN as 'FAMILY, Given Middle' (components that are empty are left out)."""
    s = str(value or "").strip()
    if not s:
        return ""
    parts = [p.strip() for p in s.split("=")[0].split("^")]
    family, rest = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {rest}" if family and rest else family or rest


def header_from_dataset(ds: Any) -> ReportHeader:
    """ReportHeader from a pydicom Dataset of the study (any image of the CT or PET series)."""
    def get(keyword: str) -> object:
        return ds.get(keyword, "") if hasattr(ds, "get") else getattr(ds, keyword, "")

    return ReportHeader(
        patient_name=_person_name(get("PatientName")),
        patient_id=str(get("PatientID") or ""),
        birth_date=_dicom_date(get("PatientBirthDate")),
        sex=str(get("PatientSex") or ""),
        study_date=_dicom_date(get("StudyDate")),
        accession_number=str(get("AccessionNumber") or ""),
        study_description=str(get("StudyDescription") or ""),
    )


def model_notice(model: Mapping[str, Any], style: ReportStyle | None = None) -> str | None:
    """The notice the page must show for this model: trained on synthetic data, or the SUV rule
    standing in for a model; None for a model trained on patient data."""
    st = style or load_style()
    cfg = st.model_notice
    name = str(model.get("name", ""))
    training = str(model.get("training_data", ""))
    if any(m.lower() in training.lower() for m in cfg["synthetic_markers"]):
        return st.texts["synthetic_notice"].format(training_data=training, name=name)
    if name in cfg["rule_model_names"] or any(m.lower() in training.lower() for m in cfg["rule_training_markers"]):
        return st.texts["rule_notice"].format(name=name or "rule", training_data=training)
    return None


def registration_caveat(registration: Mapping[str, Any] | None, style: ReportStyle) -> str | None:
    """The caveat when the atlas registration is not 'ok' (or its status is not stated)."""
    status = str((registration or {}).get("status") or "not stated")
    if status == "ok":
        return None
    reasons = "; ".join(str(r) for r in (registration or {}).get("reasons", []) or [])
    return style.texts["registration_caveat"].format(status=status.upper(), reasons=f"({reasons})" if reasons else "").strip()


def _check_inputs(result: Mapping[str, Any], hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid,
                  stations: np.ndarray) -> None:
    for name, arr, grid in (("CT", hu, ct_grid), ("PET (SUV)", suv, pet_grid), ("station label map", stations, ct_grid)):
        if tuple(np.shape(arr)) != tuple(grid.shape):
            raise InputError(f"report: the {name} array has shape {tuple(np.shape(arr))} but its grid {tuple(grid.shape)}; "
                             "pass arrays indexed [k, j, i] with their own grids (labels on the CT grid)")
    missing = [k for k in ("n_stage", "stations") if k not in result]
    if missing:
        raise InputError(f"report: the result lacks {', '.join(missing)}; pass the dict of result.json (nstage.pipeline.analyse_study)")


def render_report(header: ReportHeader, result: Mapping[str, Any], hu: np.ndarray, ct_grid: Grid, suv: np.ndarray,
                  pet_grid: Grid, stations: np.ndarray, style: ReportStyle | None = None) -> ReportFiles:
    """Render the one-page report of one study as PDF and PNG bytes (deterministic for the same input).

    `result` is result.json's dict; `hu` the CT in HU and `stations` the station label map, both
    ``[k, j, i]`` on `ct_grid`; `suv` the PET in SUV on `pet_grid` (LPS grids)."""
    _check_inputs(result, hu, ct_grid, suv, pet_grid, stations)
    st = style or load_style()
    from matplotlib import rc_context

    with rc_context({"pdf.fonttype": 3, "font.family": "DejaVu Sans", "font.size": float(st.page["font_size"]),
                     "axes.linewidth": 0.6, "path.simplify": True}):
        fig = build_figure(header, result, hu, ct_grid, suv, pet_grid, stations, st)
        pdf, png = io.BytesIO(), io.BytesIO()
        fig.savefig(pdf, format="pdf", dpi=int(st.page["pdf_image_dpi"]),
                    metadata={"Title": "N-stage report", "Creator": f"nstage {__version__}", "CreationDate": None,
                              "Producer": None})
        fig.savefig(png, format="png", dpi=int(st.page["png_dpi"]), metadata={"Software": None}, pil_kwargs={"compress_level": 2})
    return ReportFiles(pdf=pdf.getvalue(), png=png.getvalue())


# --- layout ---------------------------------------------------------------------------------------

class _Page:
    """Places axes on the page in inches from the top-left corner."""

    def __init__(self, fig, width_in: float, height_in: float) -> None:
        self.fig, self.w, self.h = fig, width_in, height_in

    def axes(self, left: float, top: float, width: float, height: float, frame: bool = False):
        ax = self.fig.add_axes((left / self.w, 1.0 - (top + height) / self.h, width / self.w, height / self.h))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)  # inches from the top
        if not frame:
            ax.axis("off")
        return ax


def _text_width_in(text: str, font_pt: float, bold: bool = False) -> float:
    """Width of a line of text in DejaVu Sans at `font_pt`, in inches."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(family="DejaVu Sans", size=font_pt, weight="bold" if bold else "normal")
    return TextToPath().get_text_width_height_descent(text, prop, ismath=False)[0] / 72.0


def _wrap(text: str, width_in: float, font_pt: float, bold: bool = False) -> list[str]:
    """Greedy word wrap of `text` to lines no wider than `width_in` (measured, not estimated)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}" if line else word
        if line and _text_width_in(trial, font_pt, bold) > width_in:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line or not lines else lines


def _fit(text: str, width_in: float, font_pt: float) -> str:
    """`text`, cut with an ellipsis where it would be wider than `width_in`."""
    if _text_width_in(text, font_pt) <= width_in:
        return text
    while len(text) > 1 and _text_width_in(text + "\u2026", font_pt) > width_in:
        text = text[:-1]
    return text.rstrip(" ,(") + "\u2026"


def _line_in(font_pt: float) -> float:
    return font_pt * 1.32 / 72.0


def _boxed_text(page: _Page, top: float, text: str, face: str, edge: str, font_pt: float, bold: bool = False) -> float:
    """Full-width box with wrapped text; returns its height (inches)."""
    width = page.w - 2 * MARGIN_IN
    lines = _wrap(text, width - 0.2, font_pt, bold)
    height = len(lines) * _line_in(font_pt) + 0.12
    ax = page.axes(MARGIN_IN, top, width, height)
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((0.02, 0.02), width - 0.04, height - 0.04, boxstyle="round,pad=0,rounding_size=0.04",
                                facecolor=face, edgecolor=edge, linewidth=1.2))
    ax.text(0.1, height / 2, "\n".join(lines), fontsize=font_pt, va="center", ha="left", color="#111111",
            fontweight="bold" if bold else "normal", linespacing=1.25)
    return height


def build_figure(header: ReportHeader, result: Mapping[str, Any], hu: np.ndarray, ct_grid: Grid, suv: np.ndarray,
                 pet_grid: Grid, stations: np.ndarray, style: ReportStyle):
    """The report page as a matplotlib Figure (no pyplot: no global state)."""
    from matplotlib.figure import Figure

    w, h = style.page_size_in
    fig = Figure(figsize=(w, h), facecolor="white")
    page = _Page(fig, w, h)
    table = load_stations()
    names = {s.label: s.station for s in table}
    label_of = {s.station: s.label for s in table}
    res_stations: Mapping[str, Mapping[str, Any]] = result["stations"]
    calls: dict[int, bool | None] = {s.label: (bool(res_stations[s.station].get("malignant")) if s.station in res_stations else None)
                                     for s in table}
    fs = float(style.page["font_size"])

    top = 0.32
    title = page.axes(MARGIN_IN, top, w - 2 * MARGIN_IN, 0.3)
    title.text(0, 0.15, style.page["title"], fontsize=12.5, fontweight="bold", va="center")
    app = result.get("app", {}) or {}
    title.text(w - 2 * MARGIN_IN, 0.15, f"{app.get('name', 'nstage')} {app.get('version', __version__)}",
               fontsize=fs - 1, va="center", ha="right", color="#555555")
    top += 0.32

    notice = model_notice(result.get("model", {}) or {}, style)
    if notice:
        top += _boxed_text(page, top, notice, style.colours["notice_background"], style.colours["notice_edge"], fs + 0.5, bold=True) + GAP_IN

    top += _patient_block(page, top, header, fs) + GAP_IN
    top += _n_stage_block(page, top, result, style, fs) + GAP_IN
    for caveat in _caveats(result, style):
        top += _boxed_text(page, top, caveat, style.colours["caveat_background"], style.colours["caveat_edge"], fs) + 0.06
    top += GAP_IN - 0.06 if _caveats(result, style) else 0.0

    footer_lines = _footer_lines(result, style, w - 2 * MARGIN_IN, fs - 1)
    footer_h = len(footer_lines) * _line_in(fs - 1) + 0.08
    footer_top = h - MARGIN_IN * 0.7 - footer_h
    panel = (w - 2 * MARGIN_IN - 2 * GAP_IN) / 3.0
    axial_caption_h = 3 * _line_in(fs - 0.5) + 0.05
    # caveats take height from the middle; the axial images give it back rather than squeeze the station table
    table_w = w - 2 * MARGIN_IN - MIP_W_IN - 0.25
    short = _table_min_height(result, len(table), style, table_w, fs) + 0.05 - (footer_top - GAP_IN - panel - axial_caption_h - 0.22 - GAP_IN - top)
    panel -= max(0.0, short)
    axial_top = footer_top - GAP_IN - panel - axial_caption_h - 0.22
    middle_h = axial_top - GAP_IN - top

    smap = images.station_map(stations, ct_grid, float(style.images["mip_station_spacing_mm"]))
    _mip_and_table(page, top, middle_h, result, suv, pet_grid, smap, calls, names, table, style, fs)
    _axial_row(page, axial_top, panel, hu, ct_grid, suv, pet_grid, stations, smap, res_stations, label_of, calls, names,
               style, fs)

    foot = page.axes(MARGIN_IN, footer_top, w - 2 * MARGIN_IN, footer_h)
    foot.axhline(0.01, color="#999999", linewidth=0.6)
    foot.text(0, 0.05, "\n".join(footer_lines), fontsize=fs - 1, va="top", ha="left", color="#333333", linespacing=1.25)
    return fig


def _patient_block(page: _Page, top: float, header: ReportHeader, fs: float) -> float:
    width = page.w - 2 * MARGIN_IN
    height = 0.62
    ax = page.axes(MARGIN_IN, top, width, height)
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((0, 0), width, height, facecolor="#f2f2f2", edgecolor="none"))
    ax.text(0.1, 0.2, header.patient_name or "(no patient name)", fontsize=fs + 3, fontweight="bold", va="center")
    left = [("Patient ID", header.patient_id), ("Birth date", header.birth_date), ("Sex", header.sex)]
    right = [("Study date", header.study_date), ("Accession", header.accession_number), ("Study", header.study_description)]
    ax.text(0.1, 0.46, "     ".join(f"{k}: {v or '-'}" for k, v in left), fontsize=fs, va="center")
    for n, (k, v) in enumerate(right):
        ax.text(width * 0.56, 0.12 + n * 0.17, f"{k}:", fontsize=fs, va="center", color="#444444")
        ax.text(width * 0.56 + 0.8, 0.12 + n * 0.17, v or "-", fontsize=fs, va="center")
    return height


def _positive_by_category(result: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """Positive stations grouped by the N category they give (one group 'positive' when the side is unknown)."""
    from nstage.analysis.nrules import CATEGORIES, RulesError, load_rules

    pos = [s for s, v in result["stations"].items() if v.get("malignant")]
    side = result.get("tumour_side")
    if not pos:
        return []
    if side in SIDE_WORDS:
        try:
            rs = load_rules(str(result.get("rule_set", "tnm")))
            groups = [(c, [s for s in pos if rs.category(s, side) == c]) for c in reversed(CATEGORIES)]
            return [(c, g) for c, g in groups if g]
        except (RulesError, ValueError):
            pass
    return [("", pos)]


def _baseline_line(b: Mapping[str, Any], style: ReportStyle, width_in: float, font_pt: float) -> str:
    """One baseline as the page prints it: its rule and N stage; when that is too long, its name
    and the rule shortened (never the stage); an unavailable baseline with its reason."""
    names = _text(style, "baseline_names")
    name = str(b.get("name", ""))
    label = str(names.get(name, name))
    if b.get("available") is False or "n_stage" not in b:
        return _fit(_text(style, "baseline_unavailable").format(name=label, reason=b.get("reason", "no reason given")), width_in, font_pt)
    bn = b.get("n_stage") or {}
    stage = f": {bn.get('tnm8', '?')} / {bn.get('tnm9', '?')} (TNM 8 / 9)"
    rule = str(b.get("rule") or label)
    room = width_in - _text_width_in(stage, font_pt)
    if _text_width_in(rule, font_pt) <= room:
        return rule + stage
    return f"{label} ({_fit(rule, room - _text_width_in(label + ' ()', font_pt), font_pt)})" + stage


def _n_stage_block(page: _Page, top: float, result: Mapping[str, Any], style: ReportStyle, fs: float) -> float:
    width = page.w - 2 * MARGIN_IN
    x0 = 3.0
    value_w = width - x0 - 0.9
    side = result.get("tumour_side")
    source = str(result.get("tumour_side_source") or "")
    source_text = style.texts["side_sources"].get(source, source or "source not stated")
    side_text = f"{SIDE_WORDS[side]} lung" if side in SIDE_WORDS else "unknown"
    lines: list[tuple[str, str, str]] = [("Tumour side", f"{side_text} ({source_text})", "bold")]
    groups = _positive_by_category(result)
    if groups:
        lines.append(("Positive", "   ".join(f"{c}: {', '.join(g)}" if c else ", ".join(g) for c, g in groups), "bold"))
    else:
        lines.append(("Positive", "no station called malignant", "normal"))
    other = _other_points_line(result)  # on the rule set's line: the page keeps the table's room
    lines.append(("Rule set", str(result.get("rule_set", "-")) + (f";  N at {other}" if other else ""), "normal"))
    for b in (result.get("baseline") or {}).values():
        if isinstance(b, Mapping):
            lines.append(("Baseline", _baseline_line(b, style, value_w, fs + 0.5), "normal"))
    step = 0.2 if len(lines) <= 5 else 0.175  # four baselines and more: a little closer, the block a little taller
    height = max(1.05, 0.12 + (len(lines) - 1) * step + 0.13)
    ax = page.axes(MARGIN_IN, top, width, height)
    n = result["n_stage"]
    colour = style.colours["n_stage"]
    for x, edition, value in ((0.05, "TNM 8", n.get("tnm8", "?")), (1.45, "TNM 9", n.get("tnm9", "?"))):
        ax.text(x, 0.12, edition, fontsize=fs + 1, color="#555555", va="center")
        ax.text(x, 0.62, str(value), fontsize=38, fontweight="bold", color=colour, va="center")
    for i, (k, v, weight) in enumerate(lines):
        y = 0.12 + i * step
        ax.text(x0, y, f"{k}:", fontsize=fs + 0.5, color="#444444", va="center")
        ax.text(x0 + 0.9, y, _fit(v, value_w, fs + 0.5) if weight == "normal" else v, fontsize=fs + 0.5, va="center",
                fontweight=weight)
    return height


def _caveats(result: Mapping[str, Any], style: ReportStyle) -> list[str]:
    out = []
    reg = registration_caveat(result.get("registration"), style)
    if reg:
        out.append(reg)
    if result.get("tumour_side") not in SIDE_WORDS:
        text = style.texts["side_unknown"]
        ranges = [r for r in result.get("n_stage_reasons", []) if str(r).startswith("range over both sides")]
        out.append(f"{text} {ranges[0][0].upper()}{ranges[0][1:]}." if ranges else text)
    elif result.get("tumour_side_source") == "auto" and (result.get("tumour_side_detail") or {}).get("faint"):
        out.append(style.texts["side_faint"])
    return out


def _mip_and_table(page: _Page, top: float, height: float, result: Mapping[str, Any], suv: np.ndarray, pet_grid: Grid,
                   smap: images.StationMap | None, calls: Mapping[int, bool | None], names: Mapping[int, str],
                   table: Sequence[Station], style: ReportStyle, fs: float) -> None:
    width = page.w - 2 * MARGIN_IN
    mip_w = MIP_W_IN
    z_limits = None
    if smap is not None:
        lo, hi = smap.box_lps()
        m = float(style.images["mip_z_margin_mm"])
        z_limits = (float(lo[2]) - m, float(hi[2]) + m)
    mip = images.coronal_mip(suv, pet_grid, z_limits)
    ex = mip.extent()
    aspect = (ex[3] - ex[2]) / max(1e-6, ex[1] - ex[0])
    cap_h = 2 * _line_in(fs - 1) + 0.04
    img_h = min(height - cap_h - 0.2, mip_w * aspect)
    img_w = min(mip_w, img_h / aspect)
    head = page.axes(MARGIN_IN, top, mip_w, 0.2)
    head.text(0, 0.1, "Coronal PET MIP", fontsize=fs + 1, fontweight="bold", va="center")
    ax = page.axes(MARGIN_IN + (mip_w - img_w) / 2, top + 0.2, img_w, img_h, frame=True)
    images.draw_mip(ax, mip, smap, calls, names, style)
    lo_suv, hi_suv = style.images["mip_suv_range"]
    cap = page.axes(MARGIN_IN, top + 0.22 + img_h, mip_w, cap_h)
    cap.text(0, 0, f"SUV {lo_suv:g}-{hi_suv:g}, inverted grey; seen from the front.",
             fontsize=fs - 1, va="top", color="#333333")
    y2 = _line_in(fs - 1)
    cap.text(0, y2, "Station outlines:", fontsize=fs - 1, va="top", color="#333333")
    cap.text(1.0, y2, "malignant", fontsize=fs - 1, va="top", color=style.call_colour(True), fontweight="bold")
    cap.text(1.65, y2, "benign", fontsize=fs - 1, va="top", color=style.call_colour(False), fontweight="bold")
    _station_table(page, MARGIN_IN + mip_w + 0.25, top, width - mip_w - 0.25, height - 0.05, result, table, style, fs)


def _text(style: ReportStyle, key: str) -> Any:
    """A wording of `config/report.json` "texts" (a clear error when the file predates it)."""
    try:
        return style.texts[key]
    except KeyError:
        raise ReportConfigError(f"report settings: section 'texts' lacks {key}") from None


def suspicious(station: Mapping[str, Any]) -> bool:
    """Below the staging threshold but at or above one of the model's lower operating points (station, triage)."""
    points = station.get("operating_points") or {}
    return not station.get("malignant") and any(reached for name, reached in points.items() if name != "staging")


def suspicious_legend(result: Mapping[str, Any], style: ReportStyle) -> str | None:
    """What "suspicious" means for this model (None when it has no point below staging)."""
    thresholds = (result.get("model") or {}).get("operating_points") or {}
    staging = thresholds.get("staging")
    lower = {n: t for n, t in thresholds.items() if n != "staging" and staging is not None and float(t) < float(staging)}
    if not lower:
        return None
    names = _text(style, "point_names")
    points = " or ".join(f"{float(t):.2f} ({names.get(n, n)})" for n, t in lower.items())
    return str(_text(style, "suspicious_legend")).format(points=points, staging=float(staging))


def _other_points_line(result: Mapping[str, Any]) -> str | None:
    """The N stage (TNM 8/9) at the model's other operating points, e.g. "station point N2/N2b, triage point N3/N3"."""
    at = {n: v for n, v in sorted((result.get("n_stage_at") or {}).items()) if n != "staging"}
    if not at:
        return None
    return ", ".join(f"{n} point {v.get('tnm8', '?')}/{v.get('tnm9', '?')}" for n, v in at.items())


def _has_node_reading(res: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the result carries node readings (results written before node reading have no
    ``index_node`` key; a station whose reading found no node has ``index_node: null``)."""
    return any(isinstance(v, Mapping) and "index_node" in v for v in res.values())


def _grade_cell(node: Mapping[str, Any] | None, style: ReportStyle) -> str:
    if node is None:
        return "-"
    grade = node.get("visual_grade")
    return _text(style, "grade_not_graded") if grade is None else str(int(grade))


def _short_axis_cell(node: Mapping[str, Any] | None) -> str:
    sa = None if node is None else node.get("short_axis_mm")
    return "-" if sa is None else f"{float(sa):.1f}"


def _baseline_letters(result: Mapping[str, Any], style: ReportStyle) -> dict[str, list[str]]:
    """Station -> the letters of the baselines that call it malignant ({} when the result has no baseline calls)."""
    letters = _text(style, "baseline_letters")
    out: dict[str, list[str]] = {s: [] for s in result["stations"]}
    found = False
    for name, b in (result.get("baseline") or {}).items():
        calls = b.get("stations") if isinstance(b, Mapping) else None
        if not isinstance(calls, Mapping):
            continue
        found = True
        for station, c in calls.items():
            if station in out and isinstance(c, Mapping) and c.get("malignant"):
                out[station].append(str(letters.get(name, name[:1].upper())))
    return out if found else {}


MIN_ROW_IN = 0.095  # a station row no lower than a page without caveats gives it (16 stations with the node and baseline legends: 0.099 in); a caveat takes its height from the axial images instead


def _table_notes(result: Mapping[str, Any], style: ReportStyle, width: float, fs: float) -> list[str]:
    """The wrapped lines of the notes under the station table (probability, suspicious, node and baseline legends)."""
    model = result.get("model", {}) or {}
    notes = [f"* {model['probability']}"] if model.get("probability") else []
    legend = suspicious_legend(result, style)
    if legend:
        notes.append(legend)
    if _has_node_reading(result["stations"]):
        notes.append(_text(style, "node_legend"))
    if _baseline_letters(result, style):
        notes.append(_text(style, "baseline_legend"))
    return [line for text in notes for line in _wrap(text, width, fs - 1.5)]


def _table_head_bottom(style: ReportStyle, keys: Sequence[str], fs: float) -> float:
    heads = _text(style, "table_headers")
    head_lines = max(len(str(heads[k]).split("\n")) for k in ("station", "region", *keys))
    return 0.22 + head_lines * _line_in(fs - 0.5)


def _table_keys(result: Mapping[str, Any], style: ReportStyle) -> list[str]:
    nodes = _has_node_reading(result["stations"])
    letters = _baseline_letters(result, style)
    return [*(("short_axis", "grade") if nodes else ()), "probability", "suv_max", *(("baselines",) if letters else ()), "call"]


def _table_min_height(result: Mapping[str, Any], rows: int, style: ReportStyle, width: float, fs: float) -> float:
    """The height the station table needs with rows of MIN_ROW_IN: what the page leaves it may not be less."""
    notes = _table_notes(result, style, width, fs)
    return _table_head_bottom(style, _table_keys(result, style), fs) + 0.12 + rows * MIN_ROW_IN + len(notes) * _line_in(fs - 1.5) * 1.2


def _station_table(page: _Page, left: float, top: float, width: float, height: float, result: Mapping[str, Any],
                   table: Sequence[Station], style: ReportStyle, fs: float) -> None:
    """Station, region, [index node short axis and visual grade,] probability, SUVmax, [the baselines calling
    it malignant,] and call per station.

    The node columns appear when the result carries node readings ("-": no node found in the
    station); results written before node reading get the table without them. Numeric columns
    are as wide as their widest cell; the region takes the rest (shortened with an ellipsis)."""
    from matplotlib.patches import Rectangle

    res = result["stations"]
    model = result.get("model", {}) or {}
    prob_note = "*" if model.get("probability") else ""
    nodes = _has_node_reading(res)
    heads = _text(style, "table_headers")
    head_fs = fs - 0.5
    letters = _baseline_letters(result, style)
    keys = _table_keys(result, style)
    cells: dict[str, list[str]] = {k: [] for k in keys}
    for s in table:
        v = res.get(s.station)
        if v is None:
            row = {"call": "not found"}
        else:
            prob, suvmax = v.get("probability"), v.get("suv_max")
            row = {"probability": "-" if prob is None else f"{float(prob):.2f}",
                   "suv_max": "-" if suvmax is None else f"{float(suvmax):.1f}",
                   "call": "malignant" if v.get("malignant") else "suspicious" if suspicious(v) else "benign"}
            if nodes:
                node = v.get("index_node") if isinstance(v.get("index_node"), Mapping) else None
                row |= {"short_axis": _short_axis_cell(node), "grade": _grade_cell(node, style)}
            if letters:
                row["baselines"] = "".join(letters[s.station]) or "-"
        for k in keys:
            cells[k].append(row.get(k, ""))
    gap = 0.1
    right: dict[str, float] = {}  # right edge of each numeric column, from the table's right edge
    x = 0.05
    for k in reversed(keys):
        head = (str(heads[k]) + (prob_note if k == "probability" else "")).split("\n")
        col_w = max([_text_width_in(h, head_fs, bold=True) for h in head] + [_text_width_in(c, fs, bold=True) for c in cells[k]])
        right[k] = x
        x += col_w + gap
    n = len(table)
    ax = page.axes(left, top, width, height)
    ax.text(0, 0.1, "Stations", fontsize=fs + 1, fontweight="bold", va="center")
    note = _table_notes(result, style, width, fs)
    head_bottom = _table_head_bottom(style, keys, fs)
    row_h = min(0.215, (height - head_bottom - 0.12 - len(note) * _line_in(fs - 1.5) * 1.2) / n)
    region_x = 0.6
    region_width = width - x - region_x
    for key, xpos, ha in (("station", 0.05, "left"), ("region", region_x, "left"), *((k, width - r, "right") for k, r in right.items())):
        label = str(heads[key]) + (prob_note if key == "probability" else "")
        ax.text(xpos, head_bottom, label, fontsize=head_fs, fontweight="bold", ha=ha, va="bottom", linespacing=1.1)
    ax.axhline(head_bottom + 0.03, color="#555555", linewidth=0.8)
    y0 = head_bottom + 0.03 + row_h / 2
    for r, s in enumerate(table):
        y = y0 + r * row_h
        v = res.get(s.station)
        malignant = None if v is None else bool(v.get("malignant"))
        flagged = v is not None and suspicious(v)
        if malignant or flagged:
            ax.add_patch(Rectangle((0, y - row_h / 2), width, row_h, edgecolor="none",
                                   facecolor=style.colours["malignant_row" if malignant else "suspicious_row"]))
        weight = "bold" if malignant or flagged else "normal"
        ax.text(0.05, y, s.station, fontsize=fs + 0.5, fontweight="bold", va="center")
        ax.text(region_x, y, _fit(s.name, region_width, fs - 1), fontsize=fs - 1, va="center", color="#333333")
        for k in keys:
            call = k == "call"
            colour = (style.colours["suspicious"] if flagged else style.call_colour(malignant)) if call else "#111111"
            ax.text(width - right[k], y, cells[k][r], fontsize=fs, ha="right", va="center", color=colour, fontweight=weight)
    y_end = y0 + (n - 1) * row_h + row_h / 2
    ax.axhline(y_end, color="#555555", linewidth=0.8)
    if note:
        ax.text(0, y_end + 0.08, "\n".join(note), fontsize=fs - 1.5, va="top", color="#555555", linespacing=1.2)


def _axial_row(page: _Page, top: float, panel: float, hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid,
               stations: np.ndarray, smap: images.StationMap | None, res_stations: Mapping[str, Mapping[str, Any]],
               label_of: Mapping[str, int], calls: Mapping[int, bool | None], names: Mapping[int, str],
               style: ReportStyle, fs: float) -> None:
    im = style.images
    picks = images.pick_slices(res_stations, smap, label_of, int(im["axial_max_slices"]), float(im["axial_min_separation_mm"]),
                               str(im["fallback_station"]), ct_grid)
    lo, hi = images.axial_field(smap, [p.point_lps for p in picks], ct_grid, float(im["axial_min_fov_mm"]),
                                float(im["axial_margin_mm"]))
    head = page.axes(MARGIN_IN, top, page.w - 2 * MARGIN_IN, 0.2)
    thr = float(im["fusion_suv_threshold"])
    cw = im["ct_window"]
    head.text(0, 0.1, "Axial PET/CT fusion", fontsize=fs + 1, fontweight="bold", va="center")
    head.text(1.75, 0.1, f"viewed from the feet (patient's right on the left, anterior up); CT W{cw['width']:g} L{cw['level']:g}, "
              f"PET SUV \u2265 {thr:g} in colour (to {float(im['fusion_suv_max']):g})", fontsize=fs - 1, va="center", color="#333333")
    for n, pick in enumerate(picks):
        z = images.snap_to_ct_slice(pick.point_lps, ct_grid)
        sl = images.axial_slice(hu, ct_grid, suv, pet_grid, stations, z, lo, hi, float(im["axial_spacing_mm"]))
        left = MARGIN_IN + (page.w - 2 * MARGIN_IN - 3 * panel - 2 * GAP_IN) / 2 + n * (panel + GAP_IN)  # centred when narrowed
        ax = page.axes(left, top + 0.22, panel, panel, frame=True)
        also = [label_of[im["fallback_station"]]] if pick.fallback and im["fallback_station"] in label_of else []
        also += [label_of[s] for s in pick.stations if s in label_of and not res_stations[s].get("malignant")]  # benign index nodes
        images.draw_axial(ax, sl, calls, names, style, mark_lps=pick.marks, name_also=also)
        if pick.fallback:
            what = style.texts["no_positive_slice"].format(station=im["fallback_station"])
        else:
            what = "; ".join(_slice_caption(s, res_stations[s], style) for s in pick.stations)
        cap = page.axes(left, top + 0.25 + panel, panel, 3 * _line_in(fs - 0.5))
        lines = _wrap(what, panel, fs - 0.5)
        if len(lines) > 2:
            lines = [lines[0], _fit(" ".join(lines[1:]), panel, fs - 0.5)]
        cap.text(0, 0, "\n".join([f"z = {z:.0f} mm"] + lines), fontsize=fs - 0.5, va="top", linespacing=1.2)


def _slice_caption(station: str, values: Mapping[str, Any], style: ReportStyle) -> str:
    """What a slice shows of one station: its index node (short axis, SUVmax, grade), else the station's SUVmax."""
    node = images.index_node(values)
    if node is None:
        return f"{station} (SUVmax {float(values.get('suv_max') or 0):.1f})"
    grade = node.get("visual_grade")
    return _text(style, "slice_node_caption").format(
        station=station, short_axis=float(node.get("short_axis_mm") or 0.0), suv_max=float(node.get("suv_max") or 0.0),
        grade=_text(style, "grade_not_graded") if grade is None else int(grade))


def _footer_lines(result: Mapping[str, Any], style: ReportStyle, width_in: float, font_pt: float) -> list[str]:
    model = result.get("model", {}) or {}
    text = (f"Model: {model.get('name', 'not stated')} {model.get('version', '')}".rstrip()
            + (f" \u2014 {model['kind']}" if model.get("kind") else "")
            + f"; training data: {model.get('training_data', 'not stated')}.")
    reg = result.get("registration") or {}
    study = result.get("study") or {}
    lines = _wrap(text, width_in, font_pt)
    lines += _wrap(f"Rule set: {result.get('rule_set', '-')}. Atlas registration: {reg.get('status', 'not stated')}. "
                   f"Study UID: {study.get('study_instance_uid', '-')}", width_in, font_pt)
    lines += _wrap(style.texts["footer"], width_in, font_pt)
    return lines
