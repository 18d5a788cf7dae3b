"""The shipped model: TorchScript in the MONAI Deploy `-m` folder layout, with its metadata.

  MODELS/station_cnn/model.ts        TorchScript (forward(node, context, features, patient, present) -> logits,
                                     the slot layout of batch.py),
                                     metadata.json also embedded as an extra file
  MODELS/station_cnn/metadata.json   name, version, training data, threshold, patch settings, stations
The app's models folder then holds one named model (a sub-folder with one model file), which the
SDK's `-m` accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nstage.analysis.classifier.batch import N_SLOTS
from nstage.analysis.classifier.features import PATIENT_FEATURES, STATION_FEATURES
from nstage.analysis.classifier.layout import METADATA, MODEL_DIR, MODEL_FILE
from nstage.analysis.classifier.settings import PatchSettings
from nstage.errors import InputError

if TYPE_CHECKING:  # the network's module imports monai, whose package walk imports Holoscan (monai.deploy):
    from nstage.analysis.classifier.model import StationNet  # inference needs neither


def example_inputs(settings: PatchSettings, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the slot layout (for tracing)."""
    n, m = settings.node.size, settings.context.size
    return (torch.zeros(batch, N_SLOTS, 3, n, n, n), torch.zeros(batch, N_SLOTS, 3, m, m, m),
            torch.zeros(batch, N_SLOTS, len(STATION_FEATURES)), torch.zeros(batch, len(PATIENT_FEATURES)), torch.ones(batch, N_SLOTS))


def export_torchscript(model: StationNet, metadata: dict[str, Any], models_dir: Path, settings: PatchSettings) -> Path:
    """Trace the network (CPU, eval mode) and write model.ts + metadata.json under MODELS/station_cnn/."""
    out = Path(models_dir) / MODEL_DIR
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    example = example_inputs(settings)
    metadata = {**metadata, "station_features": list(STATION_FEATURES), "patient_features": list(PATIENT_FEATURES)}
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    text = json.dumps(metadata, indent=1)
    tmp = out / (MODEL_FILE + ".tmp")
    torch.jit.save(traced, str(tmp), _extra_files={METADATA: text})
    tmp.replace(out / MODEL_FILE)
    (out / METADATA).write_text(text + "\n")
    return out / MODEL_FILE


def load_torchscript(path: Path, device: str = "cpu") -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The TorchScript module (eval mode) and its embedded metadata."""
    extra = {METADATA: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:
        raise InputError(f"cannot load the station model {path}: {exc}; re-export it with `nstage train --export`") from exc
    if not extra[METADATA]:
        raise InputError(f"station model {path} carries no metadata.json; re-export it with `nstage train --export`")
    module.eval()
    meta = json.loads(extra[METADATA])
    if meta.get("station_features") != list(STATION_FEATURES) or meta.get("patient_features") != list(PATIENT_FEATURES):
        raise InputError(f"station model {path} was trained on other inputs than this version reads "
                         "(metadata station_features / patient_features differ); retrain it with `make model`")
    return module, meta
