"""A warm pipeline worker process of the routing node: loads the model and atlas once, then analyses study after study.

    python -m nstage.route.study_server --models M --rules R [--torch-threads N] [--study MODULE:FUNCTION] [--warm-up MODULE:FUNCTION]

Protocol (one JSON object per line): the node writes requests on the server's standard input,
``{"input": DIR, "output": DIR}``; the server answers each on its standard output with
``{"status": "ok" | "input_error" | "crashed", "error": TEXT}``, after a first line
``{"ready": true, "pid": N, "warm_up_s": S}`` once warm. Its log lines go to standard error (the node
forwards them to its log). Anything else written to standard output (a library's print) is sent to
standard error, so the answers stay parseable. End of input: the server exits 0.

`--study` is the function that analyses one study, ``fn(input_dir, output_dir, models_dir, rules)``;
it raises InputError on bad input. `--warm-up` is ``fn(models_dir, rules)``, run once at start.
Defaults: `nstage run`'s own function (nstage.runner) and its warm-up.

`--torch-threads` (config/route.json's warm_command: 1) is PyTorch's intra-op thread count in this
process (the station classifier; the torch registration backend sets its own). The process is one
of `--workers` on a machine shared with the node and often other work: on 2 shared cores (load 11)
the classifier stage took 1.2-2.6 s with torch's default of one thread per core against 0.1-0.3 s
with one thread, with the same probabilities.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from nstage.errors import InputError
from nstage.progress import configure_logging

log = logging.getLogger("nstage")

DEFAULT_STUDY = "nstage.route.study_server:analyse"
DEFAULT_WARM_UP = "nstage.route.study_server:warm_up"


def analyse(input_dir: Path, output_dir: Path, models: Path, rules: str) -> None:
    """`nstage run -i INPUT -o OUTPUT -m MODELS --rules RULES` in this process (its summary lines logged)."""
    from nstage.pipeline import RunOptions
    from nstage.runner import run
    from nstage.summary import summary_lines

    result = run(input_dir, output_dir, models, RunOptions(rules))
    for line in summary_lines(result):
        log.info("%s", line)


def warm_up(models: Path, rules: str) -> None:
    """Load the model, the atlas and the libraries of every stage once (nstage.runner.warm_up)."""
    from nstage.pipeline import RunOptions
    from nstage.runner import warm_up as warm_runner

    warm_runner(models, RunOptions(rules))


def load_function(spec: str) -> Callable[..., Any]:
    """The function named MODULE:FUNCTION."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise InputError(f"{spec!r} is not MODULE:FUNCTION")
    return getattr(importlib.import_module(module), name)


def answer(study: Callable[..., Any], request: dict[str, Any], models: Path, rules: str) -> dict[str, str]:
    """Analyse the study of one request; its answer (never raises for the study's own failure)."""
    try:
        study(Path(request["input"]), Path(request["output"]), models, rules)
        return {"status": "ok", "error": ""}
    except InputError as exc:
        log.error("error: %s", exc)
        return {"status": "input_error", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a crash of one study is its answer; the server takes the next
        log.exception("the analysis crashed")
        return {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"}


def protocol_stream() -> TextIO:
    """The answers' stream: the original standard output; fd 1 (and sys.stdout) then point at standard error."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answers


def set_torch_threads(threads: int) -> None:
    """PyTorch's intra-op threads in this process (0: leave torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def serve(models: Path, rules: str, study_spec: str = DEFAULT_STUDY, warm_spec: str = DEFAULT_WARM_UP, torch_threads: int = 0) -> int:
    answers = protocol_stream()
    set_torch_threads(torch_threads)
    study, warm = load_function(study_spec), load_function(warm_spec)
    t0 = time.perf_counter()
    try:
        warm(models, rules)
    except Exception as exc:  # noqa: BLE001 - each study then reports the error itself
        log.warning("warm-up failed (%s: %s); every study loads what it needs", type(exc).__name__, exc)
    warm_s = time.perf_counter() - t0
    log.info("pipeline worker process %d ready (warm-up %.1f s)", os.getpid(), warm_s)
    answers.write(json.dumps({"ready": True, "pid": os.getpid(), "warm_up_s": round(warm_s, 2)}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        answers.write(json.dumps(answer(study, json.loads(line), models, rules)) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nstage.route.study_server", description=__doc__.splitlines()[0])
    p.add_argument("--models", required=True, type=Path)
    p.add_argument("--rules", required=True)
    p.add_argument("--torch-threads", type=int, default=0, help="PyTorch intra-op threads in this process (0: torch's default)")
    p.add_argument("--study", default=DEFAULT_STUDY, help="the function that analyses one study (MODULE:FUNCTION)")
    p.add_argument("--warm-up", default=DEFAULT_WARM_UP, help="the function run once at start (MODULE:FUNCTION)")
    args = p.parse_args(argv)
    configure_logging()
    return serve(args.models, args.rules, args.study, args.warm_up, args.torch_threads)


if __name__ == "__main__":
    sys.exit(main())
