"""The classifier's settings, read from `config/classifier.json` (one place for every hyper-parameter)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nstage import paths
from nstage.errors import InputError

CHANNELS = ("ct", "suv", "mask")


@dataclass(frozen=True)
class Cube:
    """One patch geometry: `cache_size`^3 voxels of `spacing_mm` cached, a `size`^3 crop fed to the network."""

    spacing_mm: float
    cache_size: int
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"spacing_mm": self.spacing_mm, "cache_size_voxels": self.cache_size, "size_voxels": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str) -> "Cube":
        c = cls(float(d["spacing_mm"]), int(d["cache_size_voxels"]), int(d["size_voxels"]))
        if c.size > c.cache_size or c.size < 8:
            raise InputError(f"patch.{name}.size_voxels {c.size} must be between 8 and cache_size_voxels {c.cache_size}")
        return c


@dataclass(frozen=True)
class PatchSettings:
    """The two patches of a station and their intensity scaling.

    node: a fine cube (CT resolution) centred on the station's index node (its hottest point
    when no node was read); context: a coarse cube centred on the station's bounding box."""

    node: Cube
    context: Cube
    ct_window: tuple[float, float]
    suv_range: tuple[float, float]

    def key(self) -> str:
        """A short hash naming a cache built with these settings."""
        raw = json.dumps([self.node.spacing_mm, self.node.cache_size, self.context.spacing_mm, self.context.cache_size,
                          self.ct_window, self.suv_range]).encode()
        return hashlib.sha1(raw).hexdigest()[:10]

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node.as_dict(), "context": self.context.as_dict(), "ct_window_hu": list(self.ct_window),
                "suv_range": list(self.suv_range), "channels": list(CHANNELS)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PatchSettings":
        try:
            return cls(Cube.from_dict(d["node"], "node"), Cube.from_dict(d["context"], "context"),
                       (float(d["ct_window_hu"][0]), float(d["ct_window_hu"][1])), (float(d["suv_range"][0]), float(d["suv_range"][1])))
        except KeyError as exc:
            raise InputError(f"classifier patch settings lack {exc}; a v2 model needs patch.node and patch.context") from None


def classifier_config(path: Path | None = None) -> dict[str, Any]:
    """The whole classifier config (default `config/classifier.json`)."""
    path = Path(path) if path else paths.config_dir() / "classifier.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read classifier config {path}: {exc}") from exc


def patch_settings(cfg: dict[str, Any] | None = None) -> PatchSettings:
    return PatchSettings.from_dict((cfg or classifier_config())["patch"])
