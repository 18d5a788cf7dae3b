"""A run's log: highdicom's INFO lines (one per copied module) are off unless debug logging is asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNIPPET = """
import logging, sys
from nstage.progress import configure_logging
configure_logging(verbose=sys.argv[1] == "verbose")
logging.getLogger("highdicom.base").info("copy attributes of module General Study")
logging.getLogger("highdicom.seg.sop").warning("a highdicom warning")
logging.getLogger("nstage").info("register atlas ...")
"""


def _log(mode: str) -> str:
    return subprocess.run([sys.executable, "-c", SNIPPET, mode], cwd=REPO, capture_output=True, text=True, check=True).stderr


def test_library_info_lines_are_off_but_warnings_and_stages_stay() -> None:
    text = _log("normal")
    assert "register atlas ..." in text and "a highdicom warning" in text
    assert "copy attributes of module" not in text


def test_verbose_logging_keeps_library_info_lines() -> None:
    assert "copy attributes of module General Study" in _log("verbose")
