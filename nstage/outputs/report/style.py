"""The report's settings (`config/report.json`): page, colours, image windows and wording, typed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nstage.paths import config_dir

SECTIONS = ("page", "colours", "images", "model_notice", "texts")


class ReportConfigError(ValueError):
    """`config/report.json` is missing, unreadable or lacks a setting the report needs."""


@dataclass(frozen=True)
class ReportStyle:
    """All settings of the report page, one mapping per section of the JSON file."""

    page: dict[str, Any]
    colours: dict[str, str]
    images: dict[str, Any]
    model_notice: dict[str, Any]
    texts: dict[str, Any]

    @property
    def page_size_in(self) -> tuple[float, float]:
        w, h = self.page["size_in"]
        return float(w), float(h)

    def ct_limits(self) -> tuple[float, float]:
        """(vmin, vmax) HU of the CT window."""
        w = float(self.images["ct_window"]["width"])
        level = float(self.images["ct_window"]["level"])
        return level - w / 2.0, level + w / 2.0

    def fusion_cmap(self):
        """The PET overlay colour map, starting at `fusion_cmap_start` of the named map (so the
        threshold shows as a visible colour, not black)."""
        import matplotlib
        from matplotlib.colors import ListedColormap

        base = matplotlib.colormaps[self.images["fusion_cmap"]]
        start = float(self.images["fusion_cmap_start"])
        return ListedColormap(base(np.linspace(start, 1.0, 256)), name=f"{base.name}_from_{start:g}")

    def call_colour(self, malignant: bool | None) -> str:
        """Outline / text colour of a station call (None: station not found)."""
        if malignant is None:
            return self.colours["not_found"]
        return self.colours["malignant"] if malignant else self.colours["benign"]


def default_path() -> Path:
    return config_dir() / "report.json"


def load_style(path: Path | None = None) -> ReportStyle:
    """Read and check the report settings (default: `config/report.json`)."""
    p = Path(path) if path is not None else default_path()
    return _load(str(p.resolve()))


@lru_cache(maxsize=4)
def _load(path: str) -> ReportStyle:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportConfigError(f"report settings {path}: cannot read ({exc})") from exc
    missing = [s for s in SECTIONS if not isinstance(raw.get(s), dict)]
    if missing:
        raise ReportConfigError(f"report settings {path}: missing section(s) {', '.join(missing)}")
    needed = {
        "page": ("size_in", "png_dpi", "pdf_image_dpi", "title", "font_size"),
        "colours": ("malignant", "benign", "not_found", "notice_background", "notice_edge", "caveat_background",
                    "caveat_edge", "n_stage", "malignant_row", "suspicious", "suspicious_row"),
        "images": ("mip_suv_range", "mip_cmap", "mip_station_spacing_mm", "mip_z_margin_mm", "ct_window",
                   "fusion_suv_threshold", "fusion_suv_max", "fusion_cmap", "fusion_cmap_start", "fusion_alpha", "axial_spacing_mm",
                   "axial_min_fov_mm", "axial_margin_mm", "axial_max_slices", "axial_min_separation_mm",
                   "fallback_station", "outline_width_malignant", "outline_width_benign"),
        "model_notice": ("synthetic_markers", "rule_model_names", "rule_training_markers"),
        "texts": ("synthetic_notice", "rule_notice", "registration_caveat", "side_sources", "side_faint", "side_unknown",
                  "no_positive_slice", "footer"),
    }
    for section, keys in needed.items():
        absent = [k for k in keys if k not in raw[section]]
        if absent:
            raise ReportConfigError(f"report settings {path}: section {section!r} lacks {', '.join(absent)}")
    return ReportStyle(**{s: dict(raw[s]) for s in SECTIONS})
