"""The steps behind `nstage fed`: simulate a consortium on one machine (sites = cohort folders), or write the job
folder a real consortium submits to its NVFlare server."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from nstage.analysis.classifier.layout import MODEL_DIR
from nstage.analysis.classifier.settings import classifier_config
from nstage.atomic_output import staged_output
from nstage.errors import InputError
from nstage.training.cohort import read_cohorts
from nstage.training.federated.job import JobSpec, SiteSpec, export_job, simulate
from nstage.training.federated.settings import federated_settings

log = logging.getLogger("nstage.training")


def simulate_command(sites: list[list[Path]], source: str, export: Path | None, config: Path | None, federated: Path | None,
                     privacy_filter: str | None, workspace: Path | None, jobs: int, archive: bool) -> dict[str, Any]:
    """Run the federation in NVFlare's simulator, one process per site, each site reading (and caching) only its own
    cohort folders; export the model as `nstage train --export` does."""
    if not sites:
        raise InputError("give at least one --site")
    for cohorts in sites:
        read_cohorts(cohorts)  # a missing folder or a bad CSV stops here, before the simulator starts
    cfg = classifier_config(config)
    settings = federated_settings(federated, privacy_filter)
    spec = JobSpec(cfg, settings.as_dict(), source, [SiteSpec([str(Path(c).resolve()) for c in s]) for s in sites], jobs=jobs,
                   archive=archive)
    ws = Path(workspace) if workspace else Path(tempfile.mkdtemp(prefix="nstage-fed-"))
    t0 = time.time()
    out = simulate(spec, ws)
    summary = json.loads((out / "federated.json").read_text())
    summary.update({"workspace": str(ws), "seconds": round(time.time() - t0, 1),
                    "sent_logs": sorted(str(p) for p in ws.glob("site-*/simulate_job/nstage_sent.jsonl"))})
    if export:
        with staged_output(Path(export), stale=[MODEL_DIR]) as staging:
            shutil.copytree(out / "models" / MODEL_DIR, staging / MODEL_DIR)
        summary["exported"] = str(Path(export) / MODEL_DIR / "model.ts")
    return summary


def job_command(folder: Path, source: str, sites: int, config: Path | None, federated: Path | None, privacy_filter: str | None,
                archive: bool) -> Path:
    """The job folder for a provisioned consortium (each site names its data in its own NSTAGE_FED_SITE file)."""
    if sites < 1:
        raise InputError("--min-sites must be at least 1")
    spec = JobSpec(classifier_config(config), federated_settings(federated, privacy_filter).as_dict(), source, [], sites, archive=archive)
    return export_job(spec, Path(folder))
