"""Where the shipped station model lives in a models folder (no torch import: the SUVmax slot needs none).

  MODELS/station_cnn/model.ts        TorchScript, metadata.json embedded as an extra file
  MODELS/station_cnn/metadata.json   the same metadata, readable
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = "station_cnn"
MODEL_FILE = "model.ts"
METADATA = "metadata.json"


def find_model(models_dir: Path) -> Path | None:
    """The station model file in a models folder (MODELS/station_cnn/model.ts or MODELS/model.ts), or None."""
    for p in (Path(models_dir) / MODEL_DIR / MODEL_FILE, Path(models_dir) / MODEL_FILE):
        if p.is_file():
            return p
    return None
