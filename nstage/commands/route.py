"""`nstage route serve|status|retry`: the PACS auto-routing node (docs/routing.md)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nstage.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("route", help="PACS auto-routing node: receive PET/CT studies, run the pipeline, send results back")
    rs = r.add_subparsers(dest="route_command", required=True)

    s = rs.add_parser("serve", help="run the node (its Orthanc and worker) in the foreground; SIGTERM stops it")
    s.add_argument("--aet", required=True, help="the node's AE title (called AE title for incoming studies, calling AE title for results)")
    s.add_argument("--port", required=True, type=int, help="the node's DICOM port")
    s.add_argument("--dest", required=True, help="where results go: AET@HOST:PORT (usually the PACS)")
    s.add_argument("--work", required=True, type=Path, help="work folder: Orthanc storage, queue database, logs, credentials")
    s.add_argument("--allow", action="append", metavar="AET[@HOST]",
                   help="a calling AE title allowed to store studies (repeat; host default 127.0.0.1); default: the destination's AET at its host")
    s.add_argument("--http-port", type=int, default=0, help="port of the node's Orthanc REST API on loopback (default: a free port)")
    s.add_argument("--stable-age", type=int, help="seconds without new instances after which a study is processed (default from config/route.json)")
    s.add_argument("--models", type=Path, help="models folder for the pipeline (default: the repository's models/)")
    s.add_argument("--rules", help="station-to-N rule set (default from config/route.json)")
    s.add_argument("--workers", type=int, help="pipeline runs at once (default from config/route.json: 1); intake and sending go on beside them")
    s.add_argument("--config", type=Path, help="routing defaults file (default: config/route.json)")
    s.add_argument("--orthanc", help="Orthanc executable (default: Orthanc on the PATH or /usr/sbin)")
    s.set_defaults(func=run_serve)

    st = rs.add_parser("status", help="list the node's queued, running, sending, done, failed and ignored studies")
    st.add_argument("--work", required=True, type=Path, help="the node's work folder")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--state", action="append", help="only jobs in this state (repeat)")
    st.set_defaults(func=run_status)

    rt = rs.add_parser("retry", help="put a failed job back in the queue (after fixing its cause)")
    rt.add_argument("--work", required=True, type=Path, help="the node's work folder")
    rt.add_argument("job", type=int, help="job number (from `nstage route status`)")
    rt.set_defaults(func=run_retry)


def run_serve(args: argparse.Namespace) -> int:
    from nstage.route.settings import build_settings
    from nstage.route.supervisor import serve

    settings = build_settings(args.aet, args.port, args.dest, args.work, args.allow, args.http_port, args.models, args.rules, args.stable_age,
                              args.config, args.orthanc, args.workers)
    return serve(settings)


def _open_queue(work: Path, readonly: bool = True):
    from nstage.route.queue import JobQueue

    path = Path(work) / "queue.sqlite"
    if not path.is_file():
        raise InputError(f"{path} does not exist: give the --work folder of a node started with `nstage route serve`")
    return JobQueue(path, readonly=readonly)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def run_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    queue = _open_queue(args.work)
    try:
        jobs = queue.jobs(args.state)
        outputs = {j.id: queue.outputs(j.id) for j in jobs}
        counts = queue.counts()
    finally:
        queue.close()
    if args.json:
        print(json.dumps({"counts": counts, "jobs": [{**asdict(j), "outputs": [asdict(o) for o in outputs[j.id]]} for j in jobs]}, indent=1))
        return 0
    print("  ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"{'job':>5} {'state':<10} {'study (Orthanc id)':<20} {'series':<10} {'inst':>5} {'tries':>5} {'sent':>5} {'updated':<19} error")
    for j in jobs:
        outs = outputs[j.id]
        sent = f"{sum(o.sent_at is not None for o in outs)}/{len(outs)}"
        print(f"{j.id:>5} {j.state:<10} {j.study_key[:20]:<20} {j.modalities[:10]:<10} {j.n_instances:>5} {j.attempts:>5} {sent:>5} "
              f"{_when(j.updated_at):<19} {(j.error or '')[:160]}")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    from nstage.route.queue import InvalidTransition

    queue = _open_queue(args.work, readonly=False)
    try:
        job = queue.retry(args.job)
    except KeyError as e:
        raise InputError(f"there is no job {args.job} in {args.work}") from e
    except InvalidTransition as e:
        raise InputError(f"{e}: only failed jobs can be retried") from e
    finally:
        queue.close()
    print(f"job {job.id} is {job.state} again")
    return 0
