"""Thresholds of measurements, baselines and the tumour-side finder (`config/analysis.json`)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from nstage.paths import config_dir


@lru_cache(maxsize=1)
def analysis_config() -> dict[str, Any]:
    return json.loads((config_dir() / "analysis.json").read_text())
