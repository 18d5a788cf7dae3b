"""The NVFlare job of federated weak training: built with NVFlare's job API (FedJob), run in NVFlare's simulator on
one machine, or exported as a job folder that a consortium's administrator submits to its provisioned server.

On each site the job holds: the Client API executor running site_script.py, the privacy filter when one is set
(config/federated.json), and the audit of what the site sends (nstage.training.federated.audit), last. On the
server: the controller (nstage.training.federated.flare_server).

The simulation runs in a child interpreter (`python -m nstage.training.federated.job SPEC.json`): NVFlare's
simulator forks its server process, and a process that has run PyTorch must not fork.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nstage.errors import InputError
from nstage.training.federated.settings import FederatedSettings

SITE_SCRIPT = Path(__file__).with_name("site_script.py")
JOB_NAME = "nstage_federated"
COMPONENTS = "nstage.training.federated"  # what a site's class_allow_list must name besides NVFlare's own
SERVER_OUTPUT = Path("server") / "simulate_job" / "nstage"  # where the simulated server writes (nstage.training.federated.flare_server)


@dataclass
class SiteSpec:
    """One simulated site: its cohort folders (its own cache beside them, or `cache`)."""

    cohorts: list[str]
    cache: str | None = None

    def script_args(self, rank: int, source: str, jobs: int, send_diff: bool) -> str:
        args = [f"--cohort {c}" for c in self.cohorts] + [f"--stations {source}", f"--jobs {jobs}", f"--rank {rank}"]
        if self.cache:
            args.append(f"--cache {self.cache}")
        if send_diff:
            args.append("--send-diff")
        for a in self.cohorts + ([self.cache] if self.cache else []):
            if any(ch.isspace() for ch in a):
                raise InputError(f"the simulation passes folders as script arguments: {a!r} holds a space")
        return " ".join(args)


@dataclass
class JobSpec:
    """Everything the job is built from (JSON: the child interpreter reads it)."""

    config: dict[str, Any]
    federated: dict[str, Any]
    source: str
    sites: list[SiteSpec] = field(default_factory=list)  # empty: a production job for every site of the consortium
    min_sites: int = 1
    jobs: int = 1
    archive: bool = False

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, path: Path) -> "JobSpec":
        d = json.loads(Path(path).read_text())
        return cls(d["config"], d["federated"], d["source"], [SiteSpec(**s) for s in d["sites"]], int(d["min_sites"]), int(d["jobs"]),
                   bool(d["archive"]))


def privacy_filter(settings: FederatedSettings) -> Any:
    """NVFlare's privacy filter named in the settings (None: none)."""
    if settings.privacy_filter == "percentile":
        from nvflare.app_common.filters.percentile_privacy import PercentilePrivacy

        return PercentilePrivacy(**settings.filter_args)
    if settings.privacy_filter == "svt":
        from nvflare.app_common.filters.svt_privacy import SVTPrivacy

        return SVTPrivacy(**settings.filter_args)
    return None


def build_job(spec: JobSpec) -> Any:
    """The FedJob: the controller on the server; executor, privacy filter and audit on each site."""
    from nvflare.apis.job_def import ALL_SITES
    from nvflare.app_common.executors.client_api_executor import ClientAPIExecutor
    from nvflare.client.config import ExchangeFormat
    from nvflare.job_config.api import FedJob
    from nvflare.job_config.defs import FilterType

    from nstage.training.federated.audit import SentAudit
    from nstage.training.federated.flare_server import FederatedTrainingController
    from nstage.training.federated.protocol import TASKS

    settings = FederatedSettings.from_dict(spec.federated)
    job = FedJob(name=JOB_NAME, min_clients=max(spec.min_sites, len(spec.sites), 1))
    job.set_app_packages(["nstage"])  # installed on every site and the server: the job does not carry a copy
    interval = settings.task_request_interval_s if spec.sites else 0.0  # a consortium keeps NVFlare's default
    job.to_server(FederatedTrainingController(json.dumps(spec.config), json.dumps(settings.as_dict()), spec.source, interval))
    diff = settings.privacy_filter != "none"
    targets = [(f"site-{i + 1}", s.script_args(i, spec.source, spec.jobs, diff)) for i, s in enumerate(spec.sites)]
    for name, args in targets or [(ALL_SITES, "--send-diff" if diff else "")]:
        def place(obj: Any, target: str = name, **kw: Any) -> None:
            job.to(obj, target, **kw)

        # NVFlare's Client API executor runs site_script.py (found in the job's custom folder) in the site's process
        place(ClientAPIExecutor(task_script_path=SITE_SCRIPT.name, task_script_args=args, execution_mode="in_process",
                                params_exchange_format=ExchangeFormat.PYTORCH, server_expected_format=ExchangeFormat.NUMPY),
              tasks=["*"])
        job.add_file_to(str(SITE_SCRIPT), name)
        flt = privacy_filter(settings)
        if flt is not None:  # NVFlare keeps one filter chain per task set: train's is the filter, then the audit
            place(flt, filter_type=FilterType.TASK_RESULT, tasks=["train"])
        place(SentAudit(spec.archive), filter_type=FilterType.TASK_RESULT, tasks=["train"])
        place(SentAudit(spec.archive), filter_type=FilterType.TASK_RESULT, tasks=[t for t in TASKS if t != "train"])
    return job


def allow_components(workspace: Path) -> None:
    """A simulation workspace's component policy: NVFlare's default classes and this package's (a provisioned site
    adds COMPONENTS to its local/resources.json the same way, docs/federated.md)."""
    from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST

    local = workspace / "local"
    local.mkdir(parents=True, exist_ok=True)
    (local / "resources.json").write_text(json.dumps({"format_version": 2,
                                                      "class_allow_list": list(DEFAULT_CLASS_ALLOW_LIST) + [COMPONENTS]}, indent=1))


class Simulation:
    """The job running in NVFlare's simulator (one process per site, loopback only) in a child interpreter; `result`
    waits for it and returns the server's output folder (models/, federated.json)."""

    def __init__(self, spec: JobSpec, workspace: Path, timeout_s: float | None = None) -> None:
        if not spec.sites:
            raise InputError("a simulation needs at least one site")
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        spec_path = self.workspace / "job_spec.json"
        spec.write(spec_path)
        self.log_path = self.workspace / "simulator.log"
        self.timeout_s = timeout_s
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "nstage.training.federated.job", str(spec_path), str(self.workspace)],
                                            stdout=log, stderr=subprocess.STDOUT)

    def result(self) -> Path:
        try:
            rc = self.process.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise InputError(f"the NVFlare simulation ran past {self.timeout_s} s; see {self.log_path}") from None
        out = self.workspace / SERVER_OUTPUT
        error = out / "error.txt"
        if error.is_file():
            raise InputError(f"federated training stopped: {error.read_text().strip()} (logs: {self.workspace})")
        if rc != 0 or not (out / "federated.json").is_file():
            raise InputError(f"the NVFlare simulation failed (exit {rc}); see {self.log_path} and {self.workspace}/*/log.txt")
        return out


def simulate(spec: JobSpec, workspace: Path, timeout_s: float | None = None) -> Path:
    """Run the job in NVFlare's simulator and wait for it (Simulation)."""
    return Simulation(spec, workspace, timeout_s).result()


def export_job(spec: JobSpec, folder: Path) -> Path:
    """A job folder for a consortium's provisioned server (`nvflare job submit -j FOLDER`)."""
    build_job(spec).export_job(str(folder))
    return Path(folder) / JOB_NAME


def main(argv: list[str] | None = None) -> int:
    """Child interpreter: build the job from SPEC.json and run it in the simulator in WORKSPACE."""
    argv = sys.argv[1:] if argv is None else argv
    spec, workspace = JobSpec.read(Path(argv[0])), Path(argv[1])
    allow_components(workspace)
    job = build_job(spec)
    rc = job.simulator_run(str(workspace), threads=len(spec.sites))
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
