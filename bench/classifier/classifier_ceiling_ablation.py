"""Which true node features carry the disease-model oracle of bench/classifier/classifier_ceiling (an ablation).

The same small network as the ceiling's oracle_local, fitted on sampled patients (no rendering) with
one group of true features at a time: the hottest node's uptake and size, all of its features, all
but one of its signs (which sign lifts the oracle), the second node, and the station's node count. A feature group that ranks well alone and that no image
shows (the count of all nodes, normal ones of 2-5 mm included) is a sign the generator plants.
Run: python -m bench.classifier.classifier_ceiling_ablation (writes bench/classifier/classifier_ceiling_ablation.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.classifier.classifier_ceiling import PER_NODE, fit_score, train_and_test
from bench.machine import machine

COUNT = 2 * PER_NODE
GROUPS: dict[str, tuple[list[int], bool]] = {  # name: (feature columns, with the station's identity)
    "all (two hottest nodes and the count)": (list(range(COUNT + 1)), True),
    "without the count": (list(range(COUNT)), True),
    "hottest node, all 7 features": (list(range(PER_NODE)), True),
    "hottest node without tissue HU": ([0, 1, 2, 4, 5, 6], True),
    "hottest node without shape": ([0, 1, 3, 4, 5, 6], True),
    "hottest node without calcification": ([0, 1, 2, 3, 5, 6], True),
    "hottest node without fatty hilum": ([0, 1, 2, 3, 4, 6], True),
    "hottest node without necrosis": ([0, 1, 2, 3, 4, 5], True),
    "hottest node uptake, size, shape and tissue HU (no inner sign)": ([0, 1, 2, 3], True),
    "hottest node uptake and short axis": ([0, 1], True),
    "hottest node uptake and short axis, no station identity": ([0, 1], False),
    "two hottest nodes, uptake and short axis": ([0, 1, PER_NODE, PER_NODE + 1], True),
    "node count only": ([COUNT], False),
}


def _design(feats: np.ndarray, cols: list[int], identity: bool) -> np.ndarray:
    p, s, _ = feats.shape
    parts = [feats[:, :, cols]] + ([np.broadcast_to(np.eye(s, dtype=np.float32), (p, s, s))] if identity else [])
    return np.concatenate(parts, axis=2).reshape(p * s, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-patients", type=int, default=4000)
    ap.add_argument("--test-patients", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "classifier_ceiling_ablation.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    (f_tr, _, y_tr, _, _), (f_te, *_), test = train_and_test(args.train_patients, args.test_patients)
    rows = {name: test.figures(fit_score(_design(f_tr, cols, ident), y_tr.reshape(-1), _design(f_te, cols, ident)))["auroc"]
            for name, (cols, ident) in GROUPS.items()}
    result = {"machine": machine(), "train_patients": args.train_patients, "test_patients": args.test_patients,
              "station_auroc": rows, "seconds": round(time.perf_counter() - t0, 1)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
