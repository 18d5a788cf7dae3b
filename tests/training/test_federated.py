"""Federated weak training (nstage fed, docs/federated.md) in NVIDIA FLARE's simulator, offline (loopback only),
on the TINY recipe and fake cohorts of tests/training:

- one site federated is central `nstage train`: the same weights bit for bit, the same best epochs; calibration
  within 0.1 %, thresholds within 0.05 in logit, probabilities within 1e-3 (Newton on pooled sums against L-BFGS;
  thresholds on the grid);
- three heterogeneous sites (one cohort split by case mix: a screening site, a referral centre, a small general
  hospital; three scanners' SUV scales) are within a stated margin of central training on the pooled cohort, and
  far above each site alone, on a held-out cohort of all three scanners;
- nothing but weights and aggregate counts leaves a site (each site's log and archive of what it sent);
- the privacy filter runs on the site, before anything leaves it;
- a site that cannot train stops the run, and nothing is exported.

The four simulations start together and the central trainings run while they do (the simulator mostly waits).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nstage.errors import InputError
from nstage.training.cache import CachedCase
from nstage.training.ensemble import fit
from nstage.training.metrics import auroc
from nstage.training.thresholds import specificity_threshold, staged_at, staging_inputs, staging_threshold
from nstage.training.train import calibrate, new_model, predict, prepare
from nstage.training.weak_labels import group_scores, known_negatives
from tests.training.test_classifier_training import REPO, TINY, TINY_SETTINGS, fake_cases, write_fake_cohort

pytest.importorskip("nvflare", reason="federated training needs NVIDIA FLARE: make setup-federated")

from nstage.training.federated.calibration import pooled, site_terms  # noqa: E402
from nstage.training.platt import NewtonFit  # noqa: E402
from nstage.training.federated.job import JobSpec, Simulation, SiteSpec  # noqa: E402
from nstage.training.federated.server import fedavg  # noqa: E402
from nstage.training.federated.settings import FederatedSettings, Grid  # noqa: E402
from nstage.training.federated.summaries import (  # noqa: E402
    sensitivity_index,
    specificity_index,
    staging_index,
    summarise,
)
from nstage.training.operating_points import positive_scores, sensitivity_threshold  # noqa: E402
from nstage.training.workflow import predict_exported  # noqa: E402

GRID = Grid()
STEP = GRID.step_logit
RECIPE = copy.deepcopy(TINY)
RECIPE["training"].update({"ensemble_folds": 2, "threshold": "staging",  # the shipped recipe's shape: a cross-fitted ensemble
                           "cpu_threads": 1})  # central training here and the sites' processes sum in the same order
VENDORS = {"screening": 1.0, "referral": 1.3, "general": 0.8}  # each site's scanner: its SUV reads this much of the truth
TIMEOUT_S = 900


def logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def scanner(cases: list[CachedCase], suv_scale: float, root: Path) -> list[CachedCase]:
    """The cases as another scanner and site would hold them: SUV channels and the SUVmax feature scaled, filed under
    ROOT (its own cohort folder and cache)."""
    out = []
    for c in cases:
        x = c.inputs
        node, context = x.node.astype(np.float32), x.context.astype(np.float32)
        node[:, 1] *= suv_scale
        context[:, 1] *= suv_scale
        features = x.features.copy()
        features[:, 0] = np.log1p(np.expm1(features[:, 0]) * suv_scale)
        case = dataclasses.replace(c.case, cohort=root.name, study_dir=root / c.case.case / "dicom")
        out.append(dataclasses.replace(c, case=case, inputs=dataclasses.replace(x, node=node.astype(np.float16),
                                                                                 context=context.astype(np.float16), features=features)))
    return out


def heterogeneous_sites(tmp: Path) -> dict[str, list[CachedCase]]:
    """One synthetic cohort split as hospitals see it: a screening site (N0/N1 patients), a referral centre (N2/N3)
    and a small general hospital (both), each with its own scanner."""
    pool = fake_cases(72, seed=21)
    early = [c for c in pool if c.case.n_tnm8 in ("N0", "N1")]
    late = [c for c in pool if c.case.n_tnm8 in ("N2", "N3")]
    parts = {"screening": early[:12], "referral": late[:12], "general": early[12:16] + late[12:16]}
    return {name: scanner(cases, VENDORS[name], tmp / name) for name, cases in parts.items()}


def held_out() -> list[CachedCase]:
    return [c for i, (name, scale) in enumerate(VENDORS.items()) for c in scanner(fake_cases(20, seed=90 + i), scale, Path(f"/held/{name}"))]


def spec(sites: list[Path], cfg: dict, settings: FederatedSettings, archive: bool = False) -> JobSpec:
    return JobSpec(cfg, settings.as_dict(), "truth", [SiteSpec([str(s)]) for s in sites], archive=archive)


def held_out_figures(probs: list[np.ndarray], threshold: float, cases: list[CachedCase]) -> tuple[float, float]:
    """(station AUROC against the truth, N-stage accuracy at the threshold) on held-out cases."""
    y = np.concatenate([c.truth() for c in cases])
    maxima, levels = staging_inputs(probs, cases)
    return auroc(np.concatenate(probs), y), float(np.mean(staged_at(maxima, threshold) == levels))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The four simulations (one site; three sites; one site with the percentile filter; a site too small for the
    recipe), started together, and the central trainings they are compared with, run meanwhile."""
    tmp = tmp_path_factory.mktemp("fed")
    one = tmp / "one_site"
    one_cases = fake_cases(12, seed=5, root=one, feature_signal=0.6)  # not separable: calibration has a finite optimum
    write_fake_cohort(one, one_cases)
    sites = heterogeneous_sites(tmp)
    for name, cases in sites.items():
        write_fake_cohort(tmp / name, cases)
    filtered = tmp / "filtered"
    write_fake_cohort(filtered, fake_cases(8, seed=7, root=filtered))
    few = tmp / "few"
    write_fake_cohort(few, fake_cases(1, seed=5, root=few))  # fewer cases than the recipe's folds
    plain = FederatedSettings()
    single = copy.deepcopy(RECIPE)
    single["training"].update({"ensemble_folds": 1, "epochs": 1})
    sims = {"one": Simulation(spec([one], RECIPE, plain), tmp / "ws_one", TIMEOUT_S),
            "three": Simulation(spec([tmp / n for n in sites], RECIPE, plain, archive=True), tmp / "ws_three", TIMEOUT_S),
            "filtered": Simulation(spec([filtered], single, FederatedSettings(privacy_filter="percentile",
                                                                                  filter_args={"percentile": 10, "gamma": 0.01}),
                                        archive=True), tmp / "ws_filtered", TIMEOUT_S),
            "few": Simulation(spec([few], RECIPE, plain), tmp / "ws_few", TIMEOUT_S)}
    central = {"one": fit(one_cases, RECIPE), "pooled": fit([c for s in sites.values() for c in s], RECIPE),
               **{name: fit(cases, RECIPE) for name, cases in sites.items()}}
    failure = None
    try:
        sims.pop("few").result()
    except InputError as exc:
        failure = exc
    out = {name: sim.result() for name, sim in sims.items()}
    return {"tmp": tmp, "one_cases": one_cases, "sites": sites, "central": central, "out": out, "failure": failure,
            "workspaces": {name: sim.workspace for name, sim in sims.items()} | {"few": tmp / "ws_few"}}


# ---- the server's rules on summed counts, against the central rules (no simulator) ------------------------------

def _random_probs(cases: list[CachedCase], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(rng.beta(0.6, 2.5, c.labels.size) + 0.5 * c.truth() * rng.random(c.labels.size), 1e-4, 1 - 1e-4) for c in cases]


def test_the_grid_rules_choose_the_central_thresholds_to_one_step_and_sites_sum():
    cases = fake_cases(30, seed=3)
    examples = prepare(cases, RECIPE["training"])
    probs = _random_probs(cases, 4)
    grid = GRID.thresholds()
    s = summarise(probs, examples, cases, grid)
    maxima, levels = staging_inputs(probs, cases)
    central = staging_threshold(maxima, levels)
    j = staging_index(s.staged_right, s.maxima)
    assert abs(logit(grid[j]) - logit(central)) <= STEP
    assert s.staged_right[j] == np.sum(staged_at(maxima, central) == levels)  # the same patients staged right
    negatives = np.concatenate([known_negatives(p, e.weak) for p, e in zip(probs, examples)])
    assert abs(logit(grid[specificity_index(s.benign, 0.9)]) - logit(specificity_threshold(negatives, 0.9))) <= STEP
    positives = positive_scores(probs, examples, False)
    assert abs(logit(grid[sensitivity_index(s.positive_groups, 0.85)]) - logit(sensitivity_threshold(positives, 0.85))) <= STEP
    assert s.positive_groups.sum() == sum(t for p, e in zip(probs, examples) for _, t in group_scores(p, e.weak))
    # counts add up over sites: two sites' sums are the pooled cohort's counts
    a, b = summarise(probs[:11], examples[:11], cases[:11], grid), summarise(probs[11:], examples[11:], cases[11:], grid)
    both = a + b
    for field in ("cases", "staged_right", "benign", "positive_groups", "negative_groups", "maxima"):
        assert np.array_equal(getattr(both, field), getattr(s, field))


def test_newton_on_pooled_sums_finds_the_central_calibration():
    cases = fake_cases(20, seed=8)
    examples = prepare(cases, RECIPE["training"])
    rng = np.random.default_rng(2)
    logits = [rng.normal(-2.0, 1.0, c.labels.size) + 2.5 * c.truth() for c in cases]  # overlapping: a finite optimum
    pooling = ("max", 4.0)
    a, b = calibrate(logits, examples, False, 1.0, RECIPE["training"])
    fit_ = NewtonFit()
    while not fit_.done and fit_.rounds < 12:
        split = [site_terms(logits[:7], examples[:7], fit_.candidates, pooling), site_terms(logits[7:], examples[7:], fit_.candidates, pooling)]
        fit_.update(pooled(split), 1e-6)
    assert fit_.done and fit_.rounds <= 10
    assert fit_.result == pytest.approx((a, b), abs=1e-3)


def test_fedavg_weighs_by_training_cases_and_one_site_comes_back_unchanged():
    x = {"w": np.array([0.1, -3.3, 7.77], np.float32), "n": np.array([4], np.int64)}
    y = {"w": np.array([1.0, 2.0, 3.0], np.float32), "n": np.array([9], np.int64)}
    same = fedavg([x], [7.0])
    assert same["w"].dtype == np.float32 and np.array_equal(same["w"], x["w"])
    mixed = fedavg([x, y], [1.0, 3.0])
    np.testing.assert_allclose(mixed["w"], 0.25 * x["w"] + 0.75 * y["w"], rtol=1e-6)
    assert mixed["n"][0] == 4  # not a float: the first site's


# ---- the simulations -------------------------------------------------------------------------------------------

def _members(module: torch.nn.Module, k: int) -> list[dict[str, torch.Tensor]]:
    sd = module.state_dict()
    return [{n.split(".", 2)[2]: v for n, v in sd.items() if n.startswith(f"members.{f}.")} for f in range(k)]


def test_one_site_federated_is_central_training(runs):
    """Same seed, CPU: the same weights bit for bit and the same best epochs; calibration within 0.1 % (Newton on the
    pooled sums against L-BFGS), thresholds within 0.05 in logit (the grid's step plus the calibration's difference),
    the same figures at them, probabilities of the exported model within 1e-3."""
    central, out = runs["central"]["one"], runs["out"]["one"]
    record = json.loads((out / "federated.json").read_text())
    model_file = out / "models" / "station_cnn" / "model.ts"
    probs, threshold, meta = predict_exported(model_file, runs["one_cases"])  # loaded as nstage run and the app load it
    module = torch.jit.load(str(model_file))
    for mine, theirs in zip(_members(module, 2), central.model.members):
        ref = {k: v for k, v in theirs.state_dict().items() if k != "calibration"}
        assert ref.keys() == {k for k in mine if k != "calibration"}
        assert all(torch.equal(mine[k], ref[k]) for k in ref)
    for m, c in zip(record["members"], central.members):
        assert m["best_epoch"] == c["best_epoch"] and m["seed"] == c["seed"]
        assert [h["val_loss"] for h in m["history"]] == [h["val_loss"] for h in c["history"]]
        assert [h["train_loss"] for h in m["history"]] == pytest.approx([h["train_loss"] for h in c["history"]], rel=1e-12)
        assert m["calibration"] == pytest.approx(c["calibration"], rel=1e-3)
    assert threshold == record["threshold"] and meta["federated"]["sites"] == 1
    assert abs(logit(threshold) - logit(central.threshold)) <= 0.05
    for name, point in central.points.items():
        mine = record["operating_points"][name]
        assert abs(logit(mine["threshold"]) - logit(point["threshold"])) <= 0.05
        for figure in ("validation_n_stage_accuracy", "validation_benign_specificity", "validation_sensitivity"):
            assert mine[figure] == pytest.approx(point[figure])
    want = predict(central.model, prepare(runs["one_cases"], RECIPE["training"]), TINY_SETTINGS)
    for p, w in zip(probs, want):
        np.testing.assert_allclose(p, w, atol=1e-3)


def test_three_heterogeneous_sites_reach_pooled_training_and_beat_each_site_alone(runs):
    """Held out (60 cases, 20 per scanner): the federated model's N-stage accuracy within 0.05 of central training on
    the pooled 32 cases and its station AUROC within 0.02; at least 0.15 above the N-stage accuracy of each site
    trained alone (a site sees one scanner and its own case mix: its thresholds do not carry)."""
    held = held_out()
    probs, threshold, meta = predict_exported(runs["out"]["three"] / "models" / "station_cnn" / "model.ts", held)
    assert meta["federated"]["sites"] == 3 and meta["ensemble"]["members"] == 2
    assert meta["kind"].startswith("federated over 3 site(s) (NVFlare FedAvg): cross-fitted ensemble of 2")  # in the PDF and the SR
    fed_auroc, fed_n = held_out_figures(probs, threshold, held)
    figures = {name: held_out_figures(predict(f.model, prepare(held, RECIPE["training"]), TINY_SETTINGS), f.threshold, held)
               for name, f in runs["central"].items() if name != "one"}
    pooled_auroc, pooled_n = figures.pop("pooled")
    print(f"held out: federated AUROC {fed_auroc:.3f} N {fed_n:.3f}; pooled AUROC {pooled_auroc:.3f} N {pooled_n:.3f}; alone "
          + ", ".join(f"{k} AUROC {a:.3f} N {n:.3f}" for k, (a, n) in figures.items()))
    assert fed_n >= pooled_n - 0.05 and fed_auroc >= pooled_auroc - 0.02
    for name, (_, alone_n) in figures.items():
        assert fed_n >= alone_n + 0.15, f"{name} alone stages {alone_n:.3f}, federated {fed_n:.3f}"


# ---- what leaves a site --------------------------------------------------------------------------------------------

def allowed_statistics(task: str, stats: dict, members: int, grid: int) -> list[str]:
    """What in a message's statistics is not an aggregate of the agreed shape (empty: all is)."""
    bad: list[str] = []

    def number(v: object, where: str) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad.append(f"{where}: {type(v).__name__}")

    def record(d: object, keys: dict[str, object], where: str) -> None:
        if not isinstance(d, dict) or not set(d) <= set(keys):
            bad.append(f"{where}: keys {sorted(d) if isinstance(d, dict) else type(d).__name__}")
            return
        for k, v in d.items():
            shape = keys[k]
            if shape == "n":
                number(v, f"{where}.{k}")
            elif isinstance(shape, int):
                if not isinstance(v, list) or len(v) != shape:
                    bad.append(f"{where}.{k}: length {len(v) if isinstance(v, list) else '-'} (agreed {shape})")
                else:
                    for i, x in enumerate(v):
                        if isinstance(x, list):
                            for y in x:
                                number(y, f"{where}.{k}[{i}]")
                        else:
                            number(x, f"{where}.{k}[{i}]")
            else:
                record(v, shape, f"{where}.{k}")  # type: ignore[arg-type]

    def each_member(v: object, keys: dict, where: str, nested: bool = False) -> None:
        if not isinstance(v, list) or len(v) != members:
            bad.append(f"{where}: one entry per member expected")
            return
        for f, m in enumerate(v):
            for i, x in enumerate(m if nested else [m]):
                record(x, keys, f"{where}[{f}]" + (f"[{i}]" if nested else ""))

    top = set(stats)
    if task == "census":
        if top != {"cases", "members"}:
            bad.append(f"census keys {sorted(top)}")
        number(stats.get("cases"), "cases")
        each_member(stats.get("members"), {"train_cases": "n", "validation_cases": "n", "positive_groups": "n", "negative_groups": "n"},
                    "members")
    elif task == "train":
        each_member(stats.get("members"), {"train_cases": "n", "train_loss_sum": "n", "steps": "n",
                                           "validation": {"loss": "n", "n": "n"}}, "members")
    elif task == "validate":
        each_member(stats.get("members"), {"loss": "n", "n": "n"}, "members")
    elif task == "calibrate":
        each_member(stats.get("members"), {"loss": "n", "n": "n", "grad": 2, "hess": 2}, "members", nested=True)
    elif task == "summarise":
        each_member(stats.get("members"), {"cases": "n", "staged_right": grid, "benign": grid + 1, "positive_groups": grid + 1,
                                           "negative_groups": grid + 1, "maxima": grid + 1}, "members")
    else:
        bad.append(f"unknown task {task!r}")
    if task != "census" and top != {"members"}:
        bad.append(f"{task} keys {sorted(top)}")
    return bad


def test_the_statistics_check_sees_a_leak():
    g = 5
    fine = {"members": [{"cases": 3, "staged_right": [1] * g, "benign": [0] * (g + 1), "positive_groups": [0] * (g + 1),
                         "negative_groups": [0] * (g + 1), "maxima": [0] * (g + 1)}]}
    assert allowed_statistics("summarise", fine, 1, g) == []
    leaky = copy.deepcopy(fine)
    leaky["members"][0]["probabilities"] = [0.91, 0.12, 0.33]  # one per patient
    assert allowed_statistics("summarise", leaky, 1, g)
    named = copy.deepcopy(fine)
    named["members"][0]["cases"] = "case_0003"
    assert allowed_statistics("summarise", named, 1, g)
    assert allowed_statistics("census", {"cases": 3, "members": [{"train_cases": 2}], "keys": ["case_0001"]}, 1, g)


def test_only_weights_and_aggregate_counts_leave_a_site(runs):
    """Every message each site sent (its own log, written as the message left, and the serialised archive): weights
    only with the train task, named and shaped as the network's; everything else numbers of an agreed shape that does
    not grow with the site's patients (counts, sums, histograms on the grid); no case name, cohort folder or path."""
    from nstage.training.federated.audit import read_archived

    ws = runs["workspaces"]["three"]
    grid = GRID.thresholds().size
    net = {f"m{f}.{k}": list(v.shape) for f in range(2) for k, v in new_model(RECIPE).state_dict().items()}
    for i, (name, cases) in enumerate(runs["sites"].items()):
        run = ws / f"site-{i + 1}" / "simulate_job"
        lines = [json.loads(x) for x in (run / "nstage_sent.jsonl").read_text().splitlines()]
        tasks = [r["task"] for r in lines]
        assert tasks[:4] == ["census", "train", "train", "validate"] and tasks[-1] == "summarise"
        assert set(tasks[4:-1]) == {"calibrate"}
        for r in lines:
            if r["task"] == "train":
                assert {k: v["shape"] for k, v in r["weights"].items()} == net
                assert set(r["meta"]) == {"nstage", "NUM_STEPS_CURRENT_ROUND"}
            else:
                assert r["weights"] == {} and set(r["meta"]) == {"nstage"}
            assert allowed_statistics(r["task"], r["meta"]["nstage"], 2, grid) == [], r["task"]
        census = lines[0]["meta"]["nstage"]
        assert census["cases"] == len(cases)
        summaries = lines[-1]["meta"]["nstage"]["members"]
        assert sum(m["cases"] for m in summaries) == len(cases)  # every patient counted once, out of fold
        secrets = [c.case.case for c in cases] + [name, str(runs["tmp"])]
        archive = sorted((run / "nstage_sent").glob("*.fobs"))
        assert len(archive) == len(lines)
        for path in archive:
            payload = path.read_bytes()
            assert not any(s.encode() in payload for s in secrets), path.name
            message = read_archived(path)  # the archive is the message as it left: the DXO and NVFlare's two headers
            assert set(message) == {"DXO", "__headers__"} and set(message["__headers__"]) <= {"__content_type__", "start_round"}


def test_the_privacy_filter_runs_on_the_site_before_the_weights_leave(runs):
    """With NVFlare's percentile filter the site sends weight changes, of which at least the percentile (10 %) are
    zero and none beyond gamma (0.01) per step; the server adds them to its weights and the run completes."""
    from nvflare.apis.dxo import DataKind, from_shareable

    from nstage.training.federated.audit import read_archived

    run = runs["workspaces"]["filtered"] / "site-1" / "simulate_job"
    trains = sorted((run / "nstage_sent").glob("*_train.fobs"))
    assert trains
    for path in trains:
        dxo = from_shareable(read_archived(path))
        assert dxo.data_kind == DataKind.WEIGHT_DIFF
        steps = dxo.get_meta_prop("NUM_STEPS_CURRENT_ROUND", 1)
        values = np.concatenate([np.ravel(v) for v in dxo.data.values()])
        assert np.mean(values == 0) >= 0.10 and np.max(np.abs(values)) <= 0.01 * steps + 1e-9
    record = json.loads((runs["out"]["filtered"] / "federated.json").read_text())
    assert record["federation"]["privacy_filter"] == "percentile"
    assert (runs["out"]["filtered"] / "models" / "station_cnn" / "model.ts").is_file()


def test_a_site_that_cannot_train_stops_the_run_and_nothing_is_exported(runs):
    """A site of one case cannot fill the recipe's two folds: it refuses at the census, the server stops the run with
    the task named, no model is written, and the reason stays in the site's own log (a message could name a case)."""
    assert runs["failure"] is not None and "task census: 0 of 1 site(s) answered" in str(runs["failure"])
    out = runs["workspaces"]["few"] / "server" / "simulate_job" / "nstage"
    assert (out / "error.txt").is_file() and not (out / "models").exists() and not (out / "federated.json").exists()
    assert "cannot fill the recipe's 2 folds" in (runs["workspaces"]["few"] / "site-1" / "log.txt").read_text()


# ---- the command line ----------------------------------------------------------------------------------------------

def test_a_missing_site_folder_is_refused_before_anything_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nstage.cli", "fed", "simulate", "--site", str(tmp_path / "nowhere"), "--stations", "truth",
                        "--export", str(tmp_path / "models"), "--workspace", str(tmp_path / "ws")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "cohort.csv" in r.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "ws").exists()


def test_the_job_folder_for_a_consortium(tmp_path):
    """`nstage fed job`: the controller on the server; on every site the Client API executor running the job's
    site script, then (train) the privacy filter and the audit, the audit for every other task; nstage is not copied
    into the job (each site installs it)."""
    r = subprocess.run([sys.executable, "-m", "nstage.cli", "fed", "job", "--out", str(tmp_path), "--min-sites", "3",
                        "--privacy-filter", "svt"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    job = tmp_path / "nstage_federated"
    assert json.loads((job / "meta.json").read_text())["min_clients"] == 3
    files = sorted(str(p.relative_to(job)) for p in job.rglob("*") if p.is_file())
    assert files == ["app/config/config_fed_client.json", "app/config/config_fed_server.json", "app/custom/site_script.py", "meta.json"]
    server = json.loads((job / "app/config/config_fed_server.json").read_text())
    assert server["workflows"][0]["path"] == "nstage.training.federated.flare_server.FederatedTrainingController"
    assert "server" not in server  # a consortium's sites ask for tasks at NVFlare's default interval
    client = json.loads((job / "app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"]["args"]["task_script_path"] == "site_script.py"
    chains = {tuple(sorted(c["tasks"])): [f["path"].rsplit(".", 1)[1] for f in c["filters"]] for c in client["task_result_filters"]}
    assert chains[("train",)] == ["SVTPrivacy", "SentAudit"]
    assert chains[("calibrate", "census", "summarise", "validate")] == ["SentAudit"]


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return float(sum(torch.sum((a[k].double() - b[k].double()) ** 2) for k in a if a[k].is_floating_point()))


def test_fedprox_holds_a_sites_weights_near_the_global_ones_and_mu_0_is_fedavg():
    from nstage.training.federated.site import Site

    recipe = copy.deepcopy(RECIPE)
    recipe["training"]["epochs"] = 4
    cases = fake_cases(24, seed=11)
    start = [{k: v.detach().clone() for k, v in m.model.state_dict().items()} for m in Site(cases, recipe, rank=0).members]

    def round_with(mu: float | None) -> list[dict[str, torch.Tensor]]:
        site = Site(cases, recipe, rank=0)  # a fresh site each time: the same draws, the same optimiser state
        args = ([dict(s) for s in start], [0, 1, 2, 3], [1.0] * len(start), False)
        return site.train_round(*args)[0] if mu is None else site.train_round(*args, proximal_mu=mu)[0]

    fedavg, zero, prox = round_with(None), round_with(0.0), round_with(50.0)
    for a, b in zip(fedavg, zero):  # mu 0 is the local training of FedAvg, bit for bit
        assert all(torch.equal(a[k], b[k]) for k in a)
    for s, avg, near in zip(start, fedavg, prox):
        assert _distance(near, s) < 0.5 * _distance(avg, s)  # the proximal term pulls the local weights back


def test_fedprox_mu_is_read_from_the_settings_and_checked(tmp_path):
    from nstage.training.federated.settings import federated_settings

    raw = json.loads((REPO / "config" / "federated.json").read_text())
    assert federated_settings().proximal_mu == raw["fedprox"]["mu"] == 0.0  # shipped: FedAvg
    raw["fedprox"]["mu"] = 0.01
    (tmp_path / "f.json").write_text(json.dumps(raw))
    assert federated_settings(tmp_path / "f.json").proximal_mu == 0.01
    raw["fedprox"]["mu"] = -1
    (tmp_path / "f.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="fedprox.mu"):
        federated_settings(tmp_path / "f.json")
