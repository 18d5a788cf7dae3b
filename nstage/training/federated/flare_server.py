"""The federation's server: an NVFlare ModelController that runs nstage.training.federated.protocol.federate and
exports the fitted model in the format `nstage run`, the app and the MAP load (nstage/analysis/classifier/export.py).

Its output lands in the server's run folder, nstage/ (models/station_cnn/model.ts + metadata.json, federated.json
with the run's record, or error.txt with why the run stopped); `nstage fed simulate` copies the model from there,
a consortium's server administrator downloads it with the job's result.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.workflows.model_controller import ModelController

from nstage.errors import InputError
from nstage.training.federated.flare_site import STATS
from nstage.training.federated.protocol import Message, federate
from nstage.training.federated.server import RULE, FederatedRun
from nstage.training.federated.settings import FederatedSettings

OUTPUT = "nstage"


class FederatedTrainingController(ModelController):
    """Sends the protocol's tasks to every site and waits for all of them (a site that fails stops the run)."""

    def __init__(self, config_json: str, federated_json: str, source: str = "registration", task_request_interval: float = 0.0) -> None:
        super().__init__(persistor_id="", ignore_result_error=False, task_check_period=0.05)
        self.config_json = config_json
        self.federated_json = federated_json
        self.source = source
        self.task_request_interval = task_request_interval

    def add_to_fed_job(self, job: Any, ctx: Any, **kwargs: Any) -> None:
        """The job API's hook: the controller, and how often an idle site asks for its next task (0: NVFlare's default,
        2 s; the simulation asks more often, config/federated.json simulator)."""
        job.add_controller(self, ctx)
        if self.task_request_interval > 0:
            job.add_params({"server": {"task_request_interval": self.task_request_interval}}, ctx)

    def _ask(self, task: str, weights: dict[str, Any], stats: dict[str, Any], diff_base: dict[str, np.ndarray] | None) -> list[Message]:
        sites = self.sample_clients()
        results = self.send_model_and_wait(task_name=task, data=FLModel(params=weights, params_type=ParamsType.FULL, meta={STATS: stats}),
                                           targets=sites)
        if len(results) != len(sites):
            raise InputError(f"task {task}: {len(results)} of {len(sites)} site(s) answered (a site's reason stays in its own log)")
        out = []
        for r in sorted(results, key=lambda m: str(m.meta.get("client_name"))):  # a fixed order: the averages' sums are fixed
            params = {k: np.asarray(v) for k, v in (r.params or {}).items()}
            if r.params_type == ParamsType.DIFF:
                if diff_base is None:
                    raise InputError(f"task {task}: a site sent weight changes where weights were due")
                params = {k: diff_base[k] + params[k].astype(diff_base[k].dtype) for k in params}
            out.append((params, dict(r.meta.get(STATS, {}))))
        return out

    def run(self) -> None:
        out = Path(self.get_run_dir()) / OUTPUT
        out.mkdir(parents=True, exist_ok=True)
        try:
            cfg = json.loads(self.config_json)
            run = FederatedRun(cfg, FederatedSettings.from_dict(json.loads(self.federated_json)))

            def ask(task: str, weights: dict[str, Any], stats: dict[str, Any]) -> list[Message]:
                return self._ask(task, weights, stats, weights if task == "train" else None)

            fitted = federate(ask, run)
            write_model(out, fitted, cfg, run, self.source)
        except Exception as exc:  # the run's reason goes where the command line reads it
            (out / "error.txt").write_text(f"{exc}\n")
            self.error(traceback.format_exc())
            self.panic(f"federated training stopped: {exc}")


def write_model(out: Path, fitted: Any, cfg: dict[str, Any], run: FederatedRun, source: str) -> None:
    """The exported model (TorchScript + metadata, as `nstage train --export`) and the run's record."""
    from nstage.analysis.classifier.export import export_torchscript
    from nstage.analysis.classifier.settings import patch_settings
    from nstage.training.workflow import model_metadata

    single = len(fitted.members) == 1
    federation = {"sites": run.sites, "rounds": run.rounds, "local_epochs": run.settings.local_epochs, "aggregation": run.settings.aggregation,
                  "engine": "NVIDIA FLARE", "privacy_filter": run.settings.privacy_filter, "grid_step_logit": run.settings.grid.step_logit}
    extra: dict[str, Any] = {"train_cases": fitted.train_cases, "validation_cases": fitted.validation_cases,
                             "operating_point": fitted.operating, "operating_points": fitted.points, "federated": federation}
    if single:
        extra.update({"best_epoch": fitted.members[0]["best_epoch"], "calibration": fitted.members[0]["calibration"]})
    else:
        extra["ensemble"] = {"members": len(fitted.members), "rule": RULE,
                             **{k: [m[k] for m in fitted.members] for k in ("seed", "best_epoch", "calibration")}}
    data = f"federated over {run.sites} site(s) ({run.cases} cases; station maps: {source})"
    meta = model_metadata(cfg, fitted.threshold, False, data, extra)
    meta["kind"] = f"federated over {run.sites} site(s) (NVFlare {run.settings.aggregation}): {meta['kind']}"
    path = export_torchscript(fitted.model, meta, out / "models", patch_settings(cfg))
    record = {"cases": run.cases, "sites": run.sites, "threshold": fitted.threshold, "operating_point": fitted.operating,
              "operating_points": fitted.points, "members": fitted.members, "ensemble_members": len(fitted.members),
              "federation": federation, "model": str(path)}
    (out / "federated.json").write_text(json.dumps(record, indent=1, default=float))

