"""The registration's quality grades on valid studies: how often a valid study is refused or flagged (issue 42).

  python -m bench.stationmap.registration_qa --cohort NAME=COHORT_DIR [...] [--real-ct DIR ...] [--out bench/stationmap/registration_qa]

Every study of a synthetic cohort is valid (a normal chest PET/CT), so each `failed` is a false refusal and
each `suspect` a false alarm. The cohorts' registrations are those the training cache keeps
(`stations-registration/<case>.registration.json`, written by `nstage evaluate --stations registration` or
the classifier benchmarks); they are graded again here with the rules of today's config/registration.json,
so a change of a threshold is measured without registering again. Real CTs are registered here
(`nstage stations`, Elastix). Per figure the page gives the range over the valid studies beside its rule.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]


def regrade(report: dict[str, Any], rules: dict[str, Any]) -> tuple[str, list[str]]:
    """Status and reasons of a stored registration.json under today's rules (its figures, and the atlas-level
    reasons that are not figure rules, such as an atlas left out of the fusion)."""
    from nstage.stationmap.registration_quality import grade

    g = grade(report["figures"], rules)
    return g.status, g.reasons


def cohort_qa(cohort: Path, rules: dict[str, Any]) -> dict[str, Any]:
    """Grades, reasons and figure ranges of one cohort's stored registrations."""
    from nstage.training.cache import default_cache_dir, registration_file
    from nstage.training.cohort import read_cohorts

    counts = {"ok": 0, "suspect": 0, "failed": 0}
    recorded = {"ok": 0, "suspect": 0, "failed": 0}
    flagged: list[dict[str, Any]] = []
    values: dict[str, list[float]] = {}
    missing = 0
    for c in read_cohorts([cohort]):
        f = registration_file(default_cache_dir(c), c)
        if not f.is_file():
            missing += 1
            continue
        report = json.loads(f.read_text())
        recorded[report["status"]] += 1
        status, reasons = regrade(report, rules)
        counts[status] += 1
        if status != "ok":
            flagged.append({"case": c.case, "status": status, "reasons": reasons, "recorded": report["status"]})
        for k, v in report["figures"].items():
            if isinstance(v, (int, float)) and v is not None:
                values.setdefault(k, []).append(float(v))
    ranges = {k: {"min": float(np.min(v)), "p01": float(np.percentile(v, 1)), "median": float(np.median(v)),
                  "p99": float(np.percentile(v, 99)), "max": float(np.max(v)), "n": len(v)} for k, v in values.items()}
    return {"studies": sum(counts.values()), "not_registered": missing, "graded_today": counts, "recorded": recorded,
            "flagged": flagged, "figures": ranges}


def real_ct_qa(ct_dir: Path) -> dict[str, Any]:
    """`nstage stations` on a real CT: its status, reasons and figures."""
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-m", "nstage.cli", "stations", str(ct_dir), "--out", tmp], capture_output=True, text=True)
        report_file = Path(tmp) / "registration.json"
        if not report_file.is_file():
            return {"ct": ct_dir.name, "status": "error", "stderr": run.stderr.strip().splitlines()[-1:]}
        r = json.loads(report_file.read_text())
    return {"ct": ct_dir.name, "status": r["status"], "reasons": r["reasons"], "figures": r["figures"]}


def markdown(res: dict[str, Any], rules: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Registration quality on valid studies (issue 42)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores. `python -m bench.stationmap.registration_qa`. Every synthetic study is a valid "
             "chest PET/CT: a `failed` is a false refusal, a `suspect` a false alarm. Stored registrations graded with today's "
             "rules (config/registration.json \"quality\").", ""]
    for name, c in res["cohorts"].items():
        g, r = c["graded_today"], c["recorded"]
        lines += [f"## {name}", "", f"{c['studies']} studies registered ({c['not_registered']} not yet). Today's rules: ok {g['ok']}, "
                  f"suspect {g['suspect']}, failed {g['failed']} (as registered: ok {r['ok']}, suspect {r['suspect']}, failed {r['failed']}).", ""]
        for f in c["flagged"]:
            lines.append(f"- {f['case']} {f['status']}: {'; '.join(f['reasons'])}")
        lines += ["", "| figure | min | 1 % | median | 99 % | max | rule |", "|---|---|---|---|---|---|---|"]
        for k, v in sorted(c["figures"].items()):
            rule = {x: y for x, y in rules.get(k, {}).items() if x.endswith(("_below", "_above"))}
            lines.append(f"| {k} | {v['min']:.4g} | {v['p01']:.4g} | {v['median']:.4g} | {v['p99']:.4g} | {v['max']:.4g} | "
                         f"{', '.join(f'{a} {b:g}' for a, b in rule.items()) or '-'} |")
        lines.append("")
    for ct in res["real_cts"]:
        lines += [f"## Real CT {ct['ct']}", "", f"Status {ct['status']}" + (f": {'; '.join(ct.get('reasons', []))}" if ct.get("reasons") else ""),
                  "", "Figures: " + ", ".join(f"{k} {v}" for k, v in (ct.get("figures") or {}).items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from nstage.stationmap.registration_settings import load_settings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", action="append", default=[], help="NAME=COHORT_DIR (registered through the training cache)")
    p.add_argument("--real-ct", action="append", type=Path, default=[])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "stationmap" / "registration_qa")
    a = p.parse_args(argv)
    rules = load_settings().rules
    res: dict[str, Any] = {"machine": machine(), "cohorts": {}, "real_cts": []}
    for item in a.cohort:
        name, _, path = item.partition("=")
        res["cohorts"][name] = cohort_qa(Path(path), rules)
    res["real_cts"] = [real_ct_qa(d) for d in a.real_ct]
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    a.out.with_suffix(".md").write_text(markdown(res, rules))
    print(markdown(res, rules))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
