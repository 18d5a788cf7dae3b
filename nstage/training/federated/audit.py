"""What leaves a site: an NVFlare task-result filter that writes down every message a site sends, as it leaves.

On the site it runs last among the result filters (after a privacy filter), so it sees the message as it goes out.
Per message one JSON line in the site's run folder (nstage_sent.jsonl): the task, the weights' names, shapes and
types, the statistics in full, and the message's size as serialised (NVFlare's FOBS). With `archive` it also keeps
each serialised message (nstage_sent/NNNN_<task>.fobs): what a data-protection officer can open and check.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from nvflare.apis.dxo import from_shareable
from nvflare.apis.filter import Filter
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.fuel.utils import fobs

LOG = "nstage_sent.jsonl"
ARCHIVE = "nstage_sent"
_SENT = itertools.count(1)  # messages sent by this site's process (one chain per task set: several filter instances)


def plain(value: Any) -> Any:
    """Numbers, strings and lists of them, as JSON holds them (arrays as lists)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"<{type(value).__name__}>"


def shape_of(array: Any) -> dict[str, Any]:
    shape = tuple(getattr(array, "shape", ()))
    return {"shape": list(shape), "dtype": str(getattr(array, "dtype", type(array).__name__))}


class SentAudit(Filter):
    """Records every result a site sends (see the module)."""

    def __init__(self, archive: bool = False) -> None:
        super().__init__()
        self.archive = archive

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        dxo = from_shareable(shareable)
        run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))
        task = str(fl_ctx.get_prop(FLContextKey.TASK_NAME, "") or shareable.get_header("__task_name__", "") or "")
        payload = fobs.dumps(shareable)
        n = next(_SENT)
        record = {"n": n, "task": task, "data_kind": dxo.data_kind, "bytes": len(payload),
                  "weights": {k: shape_of(v) for k, v in (dxo.data or {}).items()} if isinstance(dxo.data, dict) else {},
                  "meta": plain(dxo.meta)}
        with (run_dir / LOG).open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.archive:
            folder = run_dir / ARCHIVE
            folder.mkdir(exist_ok=True)
            (folder / f"{n:04d}_{task or 'task'}.fobs").write_bytes(payload)
        return shareable


def read_archived(path: Path) -> Shareable:
    """One archived message as NVFlare reads it (its decomposers registered first): what the site sent."""
    from nvflare.apis.utils.decomposers import flare_decomposers
    from nvflare.app_common.decomposers import common_decomposers

    flare_decomposers.register()
    common_decomposers.register()
    return fobs.loads(Path(path).read_bytes())
