"""The classifier's settings, read from `config/classifier.json` (one place for every hyper-parameter)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nstage import paths
from nstage.errors import InputError


@dataclass(frozen=True)
class PatchSettings:
    """Geometry and intensity scaling of one station patch."""

    spacing_mm: float
    cache_size: int  # voxels per side of the cached patch
    size: int  # voxels per side fed to the network (centre or random crop of the cached patch)
    ct_window: tuple[float, float]
    suv_range: tuple[float, float]

    @property
    def channels(self) -> int:
        return 3  # CT, SUV, station mask

    def key(self) -> str:
        """A short hash naming a cache built with these settings."""
        raw = json.dumps([self.spacing_mm, self.cache_size, self.ct_window, self.suv_range]).encode()
        return hashlib.sha1(raw).hexdigest()[:10]

    def as_dict(self) -> dict[str, Any]:
        return {"spacing_mm": self.spacing_mm, "cache_size_voxels": self.cache_size, "size_voxels": self.size,
                "ct_window_hu": list(self.ct_window), "suv_range": list(self.suv_range), "channels": ["ct", "suv", "mask"]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PatchSettings":
        s = cls(float(d["spacing_mm"]), int(d["cache_size_voxels"]), int(d["size_voxels"]),
                (float(d["ct_window_hu"][0]), float(d["ct_window_hu"][1])), (float(d["suv_range"][0]), float(d["suv_range"][1])))
        if s.size > s.cache_size or s.size < 8:
            raise InputError(f"patch size_voxels {s.size} must be between 8 and cache_size_voxels {s.cache_size}")
        return s


def classifier_config(path: Path | None = None) -> dict[str, Any]:
    """The whole classifier config (default `config/classifier.json`)."""
    path = Path(path) if path else paths.config_dir() / "classifier.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read classifier config {path}: {exc}") from exc


def patch_settings(cfg: dict[str, Any] | None = None) -> PatchSettings:
    return PatchSettings.from_dict((cfg or classifier_config())["patch"])
