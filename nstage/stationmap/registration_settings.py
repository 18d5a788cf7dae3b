"""The registration's settings, read from `config/registration.json` (one place for its numbers)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nstage import paths
from nstage.stationmap.label_transfer import TransferSettings
from nstage.stationmap.registration_torch import TorchSettings
from nstage.stationmap.thorax_landmarks import LandmarkSettings

BACKENDS = ("elastix", "torch", "auto")  # auto: torch when torch sees a CUDA GPU, else Elastix
# How Elastix runs: its programs (elastix, transformix on PATH), ITK's Python module (itk-elastix), or auto: the
# programs when they are there, else the module
ELASTIX_RUNNERS = ("auto", "program", "module")


@dataclass(frozen=True)
class RegistrationSettings:
    """What `config/registration.json` holds."""

    working_spacing_mm: float
    window_hu: tuple[float, float]
    threads: int
    parameter_files: tuple[str, ...]
    margins: dict[str, float]
    mask_margin_mm: float
    neck_radius_mm: float
    scale_limits: tuple[float, float]
    z_smoothing_mm: float
    landmarks: LandmarkSettings
    transfer: TransferSettings
    order_above: list[list[str]]
    order_right_of: list[list[str]]
    rules: dict[str, dict[str, Any]]
    backend: str = "elastix"  # one of BACKENDS
    torch: TorchSettings = field(default_factory=TorchSettings)
    elastix_runner: str = "auto"  # one of ELASTIX_RUNNERS


def load_settings(path: Path | None = None) -> RegistrationSettings:
    """Read the registration settings (default: `config/registration.json`)."""
    p = path or paths.config_dir() / "registration.json"
    c = json.loads(Path(p).read_text(encoding="utf-8"))
    return RegistrationSettings(
        working_spacing_mm=float(c["working_spacing_mm"]),
        window_hu=(float(c["intensity_window_hu"][0]), float(c["intensity_window_hu"][1])),
        threads=int(c["threads"]),
        parameter_files=tuple(c["elastix_parameter_files"]),
        margins={k: float(v) for k, v in c["crop_margin_mm"].items()},
        mask_margin_mm=float(c["metric_mask"]["lung_hull_margin_mm"]),
        neck_radius_mm=float(c["metric_mask"]["neck_radius_mm"]),
        scale_limits=(float(c["prealignment"]["scale_limits"][0]), float(c["prealignment"]["scale_limits"][1])),
        z_smoothing_mm=float(c["prealignment"]["z_smoothing_mm"]),
        landmarks=LandmarkSettings.from_config(c["landmarks"]),
        transfer=TransferSettings(
            min_tissue_hu=float(c["label_transfer"]["min_tissue_hu"]),
            min_island_fraction=float(c["label_transfer"]["min_island_fraction"]),
            region_margin_mm=float(c["label_transfer"]["region_margin_mm"]),
        ),
        order_above=[list(p) for p in c["anatomical_order"]["above"]],
        order_right_of=[list(p) for p in c["anatomical_order"]["right_of"]],
        rules={k: v for k, v in c["quality"].items() if isinstance(v, dict)},
        backend=check_backend(str(c.get("backend", "elastix"))),
        torch=TorchSettings.from_config(c.get("torch_backend", {})),
        elastix_runner=check_runner(os.environ.get("NSTAGE_ELASTIX_RUNNER") or str(c.get("elastix_runner", "auto"))),
    )


def check_backend(name: str) -> str:
    """`name` if it is one of BACKENDS, else ValueError."""
    if name not in BACKENDS:
        raise ValueError(f"registration backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def check_runner(name: str) -> str:
    """`name` if it is one of ELASTIX_RUNNERS, else ValueError."""
    if name not in ELASTIX_RUNNERS:
        raise ValueError(f"elastix_runner {name!r}: choose one of {', '.join(ELASTIX_RUNNERS)}")
    return name


def resolve_runner(name: str) -> str:
    """How Elastix runs: `program` or `module` (`auto`: the programs when both are on PATH, else the module).

    One runner for every path of a machine (nstage run, batch, the routing node, the app): the programs and ITK's
    module give the same station maps on one thread but not on two (they sum in another order), and a study must
    decide alike whichever path analyses it."""
    from nstage.stationmap.elastix_program import programs

    if check_runner(name) != "auto":
        return name
    return "program" if programs() is not None else "module"


def resolve_backend(name: str) -> str:
    """The backend that runs: `elastix` or `torch` (`auto`: torch when torch sees a CUDA GPU, else elastix)."""
    if check_backend(name) != "auto":
        return name
    import torch

    return "torch" if torch.cuda.is_available() else "elastix"


def elastix_folder(atlas_folder: Path | None = None) -> Path:
    """Elastix parameter files: the atlas folder's `elastix/` if it has one, else the default atlas's."""
    if atlas_folder is not None and (Path(atlas_folder) / "elastix").is_dir():
        return Path(atlas_folder) / "elastix"
    return paths.atlas_dir() / "elastix"
