"""The shipped model: TorchScript in the MONAI Deploy `-m` folder layout, with its metadata.

  MODELS/station_cnn/model.ts        TorchScript (forward(patches, station_index) -> logits),
                                     metadata.json also embedded as an extra file
  MODELS/station_cnn/metadata.json   name, version, training data, threshold, patch settings, stations
The app's models folder then holds one named model (a sub-folder with one model file), which the
SDK's `-m` accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nstage.analysis.classifier.layout import METADATA, MODEL_DIR, MODEL_FILE
from nstage.analysis.classifier.model import StationNet
from nstage.errors import InputError


def export_torchscript(model: StationNet, metadata: dict[str, Any], models_dir: Path, patch_size: int) -> Path:
    """Trace the network (CPU, eval mode) and write model.ts + metadata.json under MODELS/station_cnn/."""
    out = Path(models_dir) / MODEL_DIR
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    example = (torch.zeros(2, 3, patch_size, patch_size, patch_size), torch.zeros(2, dtype=torch.long))
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
    return module, json.loads(extra[METADATA])
