"""Where the project's configuration and atlas live (one place to find them)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The folder of rule tables and generator settings (`NSTAGE_CONFIG` overrides)."""
    return Path(os.environ.get("NSTAGE_CONFIG", REPO_ROOT / "config"))


def atlas_dir() -> Path:
    """The default atlas folder (`NSTAGE_ATLAS` overrides)."""
    return Path(os.environ.get("NSTAGE_ATLAS", REPO_ROOT / "atlas"))
