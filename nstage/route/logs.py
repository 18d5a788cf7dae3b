"""Logging of the node's processes: stderr and WORK/logs/node.log (appended by supervisor and worker).

Lines carry job numbers, Orthanc resource ids (hashes), states and times: never patient names or IDs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def configure_node_logging(logs_dir: Path, role: str, verbose: bool = False) -> Path:
    """Send the `nstage` loggers to stderr and to logs_dir/node.log; returns the log file."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    path = logs_dir / "node.log"
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s {role}[%(process)d] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    logger = logging.getLogger("nstage")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(path, encoding="utf-8")):
        h.setFormatter(fmt)
        logger.addHandler(h)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return path
