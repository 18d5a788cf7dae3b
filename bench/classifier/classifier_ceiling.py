"""What station AUROC the synthetic disease model allows at all: oracle classifiers on the generator's truth.

The generator (nstage/synth/disease.py, config/synth/) gives malignant and benign nodes overlapping
distributions of size, shape, uptake and CT signs (calcification, fatty hilum, central necrosis, node
density), each calibrated to its published strength (docs/synthetic-calibration.md). So even a
classifier that reads every node's *true* features - better than any image allows, since the scanner
blurs small nodes - has a ceiling. This script samples patients from the disease model only (no
rendering) and measures, on patients not used for fitting:
  - oracle_suv: the true uptake of the hottest node of the station (what SUVmax tries to read);
  - oracle_local: a small network on the station's own nodes (uptake, short axis, short/long axis
    ratio, unenhanced tissue HU, calcification, fatty hilum, necrosis of its two hottest nodes, their
    count) and its identity - the most a per-station image classifier can know;
  - oracle_local_side: plus the station's N category for the patient's tumour side;
  - oracle_patient: plus every station's hottest uptake and size in the patient and the primary
    tumour's uptake (patient context).
With --cohort (a rendered synthetic cohort; its "truth" patch cache is built where missing), the same network,
cross-validated by case, on what the images can show at best: the pipeline's station SUVmax, SUVpeak
and SUVmean as measured on the rendered PET, plus a perfect CT reading of the station's nodes (the
largest true short axis and its rendered mean HU, any calcification, fatty hilum or necrosis) - the
partial-volume loss of small nodes stays in; and then also the rendered SUV at the true centre of the
station's hottest-reading node with that node's size (a perfect node detector: spill-in from
neighbouring organs no longer counts). These are bounds from summary features, not proofs: a CNN
sees more than they hold, but not the true uptake. Each method also gets the best N-stage accuracy
any threshold reaches on the same patients (a bound tuned on the test patients, not a method).
Run: python -m bench.classifier.classifier_ceiling [--cohort DIR] (writes bench/classifier/classifier_ceiling.json).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from bench.machine import machine
from nstage.analysis.classifier.settings import classifier_config
from nstage.analysis.nrules import load_rules, stage, station_category
from nstage.ingest.study import load_study
from nstage.stations import station_names
from nstage.synth.disease import DiseaseSpec, sample_disease
from nstage.training.metrics import auroc, sensitivity_at_specificity
from nstage.training.workflow import cached_cohort

CATEGORIES = ("N1", "N2", "N3")
PER_NODE = 7  # uptake, short axis / 10, short/long axis ratio, tissue HU / 50, calcified, fatty hilum, necrotic
N_NODE_FEATURES = 2 * PER_NODE + 1  # the two hottest nodes and the node count


def _node_row(n) -> tuple[float, ...]:
    return (n.suv, n.short_axis_mm / 10.0, n.short_axis_mm / max(n.long_axis_mm, 1e-6), n.tissue_hu / 50.0,
            float(n.calcified), float(n.fatty_hilum), float(n.necrotic))


def station_features(disease: DiseaseSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per station: node features (S, N_NODE_FEATURES), category one-hot (S, 3), truth (S,)."""
    names = station_names()
    rules = load_rules("tnm")
    feats = np.zeros((len(names), N_NODE_FEATURES), np.float32)
    cat = np.zeros((len(names), len(CATEGORIES)), np.float32)
    malignant = set(disease.malignant_stations)
    truth = np.array([int(s in malignant) for s in names], np.int64)
    for i, s in enumerate(names):
        nodes = sorted((n for n in disease.nodes if n.station == s), key=lambda n: -n.suv)
        top = nodes[:2] + [None] * (2 - len(nodes[:2]))
        for j, n in enumerate(top):
            if n is not None:
                feats[i, PER_NODE * j: PER_NODE * (j + 1)] = _node_row(n)
        feats[i, 2 * PER_NODE] = len(nodes)
        cat[i, CATEGORIES.index(station_category(s, disease.tumour.side, rules))] = 1.0
    return feats, cat, truth


def sample_cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(P, S, F) node features, (P, S, 3) categories, (P, S) truth, (P,) tumour SUV and tumour sides of n sampled patients."""
    diseases = [sample_disease(np.random.default_rng(s)) for s in np.random.SeedSequence(seed).spawn(n)]
    rows = [station_features(d) for d in diseases]
    arrays = tuple(np.stack([r[k] for r in rows]) for k in range(3))
    tumour = np.array([d.tumour.suv for d in diseases], np.float32)
    return arrays[0], arrays[1], arrays[2], tumour, [d.tumour.side for d in diseases]


@dataclass(frozen=True)
class Stations:
    """Flat station rows of a cohort: truth, station name, patient index, and each patient's tumour side."""

    truth: np.ndarray  # (N,) 0/1
    names: list[str]  # (N,)
    patient: np.ndarray  # (N,)
    sides: list[str]  # (P,)

    @cached_property
    def rows_of_patient(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.patient == p) for p in range(len(self.sides))]

    def n_stages(self, flags: np.ndarray) -> list[str]:
        """Each patient's N stage (TNM 8) from per-station positive flags."""
        return [stage([self.names[i] for i in rows if flags[i]], side).tnm8 for rows, side in zip(self.rows_of_patient, self.sides)]

    @cached_property
    def true_n_stages(self) -> list[str]:
        return self.n_stages(self.truth)

    def n_stage_accuracy(self, calls: np.ndarray) -> float:
        """Share of patients whose N stage from the station calls equals the one from the truth."""
        return float(np.mean([a == b for a, b in zip(self.n_stages(calls), self.true_n_stages)]))

    def figures(self, scores: np.ndarray) -> dict[str, float]:
        """AUROC, the ROC's sensitivity at specificity 0.90 (issue 17's station target), and the best N-stage
        accuracy over score thresholds (chosen on these patients: a bound)."""
        grid = np.unique(np.quantile(scores, np.linspace(0.80, 0.995, 40)))
        acc = [self.n_stage_accuracy(scores >= t) for t in grid]
        k = int(np.argmax(acc))
        return {"auroc": round(auroc(scores, self.truth), 4),
                "sensitivity_at_specificity_0.90": round(sensitivity_at_specificity(scores, self.truth, 0.90), 4),
                "n_stage_accuracy_best_threshold": round(acc[k], 4), "best_threshold": round(float(grid[k]), 3)}


Sample = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]  # what sample_cohort returns


def train_and_test(train_patients: int, test_patients: int) -> tuple[Sample, Sample, Stations]:
    """The oracles' sampled patients (fixed seeds): the training sample, the test sample and its stations."""
    train, test = sample_cohort(train_patients, seed=910_000), sample_cohort(test_patients, seed=920_000)
    return train, test, flat_stations(test[2], test[4])


def flat_stations(truth: np.ndarray, sides: list[str]) -> Stations:
    """Stations of sampled patients (P, S) in station_names() order."""
    p, s = truth.shape
    return Stations(truth.reshape(-1), list(station_names()) * p, np.repeat(np.arange(p), s), sides)


def design(feats: np.ndarray, cat: np.ndarray, tumour: np.ndarray, level: str) -> np.ndarray:
    """Inputs (P*S, F) of one oracle level."""
    p, s, _ = feats.shape
    parts = [feats, np.broadcast_to(np.eye(s, dtype=np.float32), (p, s, s))]
    if level in ("local_side", "patient"):
        parts.append(cat)
    if level == "patient":
        context = feats[:, :, :2].reshape(p, 1, 2 * s)
        parts.append(np.broadcast_to(context, (p, s, 2 * s)))
        parts.append(np.broadcast_to(tumour[:, None, None], (p, s, 1)))
    return np.concatenate(parts, axis=2).reshape(p * s, -1)


def fit_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, epochs: int = 60, hidden: int = 64,
              weight_decay: float = 0.0, seed: int = 0) -> np.ndarray:
    """A small MLP (standardised inputs) fitted by Adam in mini-batches; returns test logits."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32))
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    net = nn.Sequential(nn.Linear(xt.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        for idx in torch.randperm(xt.shape[0]).split(4096):
            opt.zero_grad()
            loss_fn(net((xt[idx] - mu) / sd).squeeze(1), yt[idx]).backward()
            opt.step()
    with torch.no_grad():
        return net((torch.from_numpy(x_test) - mu) / sd).squeeze(1).numpy()


STATION_COLUMNS = 9  # measured SUVmax, SUVpeak, SUVmean; largest true node short axis and HU; any calcified, fatty-hilum, necrotic node; contrast


def node_centre_suv(study_dir: Path, nodes: list[dict[str, object]]) -> np.ndarray:
    """The rendered PET SUV (trilinear) at each true node centre: a perfect node detector's reading."""
    pet = load_study(study_dir).pet
    ijk = pet.grid.lps_to_index(np.array([n["centre_lps"] for n in nodes], float))
    return ndimage.map_coordinates(pet.array, ijk[:, ::-1].T, order=1, mode="nearest")


def rendered_features(root: Path) -> tuple[np.ndarray, np.ndarray, Stations]:
    """(N, F) measured-image features, (N,) measured SUVmax and the stations of a rendered cohort.

    Columns: STATION_COLUMNS station-level ones, then the SUV at the centre of the station's node that
    reads hottest there and that node's true short axis."""
    cases = cached_cohort([root], "truth", classifier_config(), jobs=2)  # caches what is not cached yet (the node reader's version names the cache)
    rows, truth, suvmax, names, patient = [], [], [], [], []
    for k, c in enumerate(cases):
        t = json.loads((c.case.study_dir.parent / "truth.json").read_text())
        centre_suv = node_centre_suv(c.case.study_dir, t["nodes"])
        for st in c.stations:
            u = c.uptake[st]
            idx = [i for i, n in enumerate(t["nodes"]) if n["station"] == st]
            nodes = [t["nodes"][i] for i in idx]
            largest = max((n["short_axis_mm"] for n in nodes), default=0.0) / 10.0
            signs = [float(any(n[k] for n in nodes)) for k in ("calcified", "fatty_hilum", "necrotic")]
            largest_hu = (max(nodes, key=lambda n: n["short_axis_mm"])["hu_mean"] or 0.0) / 50.0 if nodes else 0.0
            contrast = float(t["ct"]["contrast"])
            hot = max(idx, key=lambda i: centre_suv[i]) if idx else None
            node_suv, node_size = (float(centre_suv[hot]), t["nodes"][hot]["short_axis_mm"] / 10.0) if hot is not None else (0.0, 0.0)
            rows.append(np.float32([u.suv_max, u.suv_peak, u.suv_mean, largest, largest_hu, *signs, contrast, node_suv, node_size]))
            truth.append(int(t["stations"][st]["malignant"]))
            suvmax.append(u.suv_max)
            names.append(st)
            patient.append(k)
    stations = Stations(np.array(truth), names, np.array(patient), [c.case.tumour_side for c in cases])
    return np.stack(rows).astype(np.float32), np.array(suvmax), stations


def cross_validated(x: np.ndarray, y: np.ndarray, case_idx: np.ndarray, folds: int = 5) -> np.ndarray:
    """Out-of-fold logits of fit_score, folds by case."""
    fold_of_case = np.random.default_rng(0).permutation(case_idx.max() + 1) % folds
    fold = fold_of_case[case_idx]
    scores = np.zeros(y.size)
    for f in range(folds):
        test = fold == f
        scores[test] = fit_score(x[~test], y[~test], x[test], epochs=400, hidden=16, weight_decay=1e-3)
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-patients", type=int, default=8000)
    ap.add_argument("--test-patients", type=int, default=4000)
    ap.add_argument("--cohort", type=Path, help="rendered synthetic cohort (its 'truth' patch cache is built where missing)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "classifier_ceiling.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    (f_tr, c_tr, y_tr, t_tr, _), (f_te, c_te, _, t_te, _), test = train_and_test(args.train_patients, args.test_patients)
    oracle = {"oracle_suv": test.figures(f_te[:, :, 0].reshape(-1))}
    for level in ("local", "local_side", "patient"):
        oracle[f"oracle_{level}"] = test.figures(fit_score(design(f_tr, c_tr, t_tr, level), y_tr.reshape(-1),
                                                                     design(f_te, c_te, t_te, level)))
    result: dict[str, object] = {
        "machine": {**machine(), "torch_threads": torch.get_num_threads()},
        "disease_model": {"train_patients": args.train_patients, "test_patients": args.test_patients,
                          "test_stations": int(test.truth.size), "test_malignant_stations": int(test.truth.sum()),
                          "methods": oracle},
    }
    if args.cohort:
        x, suvmax, stations = rendered_features(args.cohort)
        result["rendered"] = {"cohort": str(args.cohort), "cases": len(stations.sides), "stations": int(stations.truth.size),
                              "malignant_stations": int(stations.truth.sum()), "methods": {
                                  "measured_suvmax": stations.figures(suvmax),
                                  "measured_uptake_and_perfect_ct": stations.figures(
                                      cross_validated(x[:, :STATION_COLUMNS], stations.truth, stations.patient)),
                                  "measured_node_uptake_and_perfect_ct": stations.figures(
                                      cross_validated(x, stations.truth, stations.patient))}}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
