"""Atlas folders: one or more template CTs with station label maps, read and validated.

An atlas folder holds `atlas.json`:

    {"format": "nstage-atlas/1",
     "atlases": [{"name": "reference", "ct": "reference/ct.nii.gz",
                  "labels": "reference/stations.nii.gz", "names": "stations.json",
                  "regions": {"blood_pool": "reference/blood_pool.nii.gz"}}]}

Paths are relative to the folder. `ct` is a CT in HU and `labels` its station label map (both
NIfTI, any grids in the same physical space). `names` is the name table of the label map: a
JSON list in the form of `stations.json` (objects with `label` and `station`), a JSON object
``{"3": "2R", ...}`` or a CSV file with the columns `label,station`. Station names are those of
`atlas/stations.json`; labels are renumbered to its labels on loading, so external atlases
(e.g. the CT atlases of Lynch et al.) can keep their own numbering. Unlisted labels are dropped.
`regions` (optional) names binary reference regions carried to the patient with the same
mapping; `blood_pool` (the descending aorta's lumen, shrunk away from the wall) gives the
mediastinal blood-pool SUV. Without it the blood-pool figures are reported as unavailable.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nstage.errors import InputError
from nstage.geometry import Grid, corners_lps, load_nifti
from nstage.stations import by_name

MANIFEST = "atlas.json"
FORMAT = "nstage-atlas/1"


@dataclass(frozen=True)
class AtlasImage:
    """One template: CT (HU) and station labels (numbered as in `atlas/stations.json`)."""

    name: str
    ct: np.ndarray  # float32 [k, j, i]
    ct_grid: Grid
    labels: np.ndarray  # uint8 [k, j, i]
    label_grid: Grid
    source: str  # folder it came from
    regions: dict[str, tuple[np.ndarray, Grid]] = field(default_factory=dict)  # name -> (bool mask, its grid)


def load_atlases(folders: list[Path]) -> list[AtlasImage]:
    """All templates of the given atlas folders, in order (each folder's `atlas.json` order)."""
    out: list[AtlasImage] = []
    for folder in folders:
        manifest = Path(folder) / MANIFEST
        try:
            mtime = manifest.stat().st_mtime_ns
        except OSError:
            raise InputError(f"atlas folder {folder}: no {MANIFEST}; an atlas folder needs one (see atlas/README.md)") from None
        out.extend(_load_folder(str(Path(folder).resolve()), mtime))
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise InputError(f"atlas names must be unique across the atlas folders, got {', '.join(names)}")
    return out


@lru_cache(maxsize=4)
def _load_folder(folder: str, mtime_ns: int) -> tuple[AtlasImage, ...]:
    """Read one atlas folder (cached per process: the atlas is loaded once)."""
    root = Path(folder)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"atlas folder {root}: cannot read {MANIFEST} ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"atlas folder {root}: {MANIFEST} must be an object with \"format\": \"{FORMAT}\"")
    entries = manifest.get("atlases")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"atlas folder {root}: {MANIFEST} needs a non-empty \"atlases\" list")
    return tuple(_load_entry(root, i, e) for i, e in enumerate(entries))


def _load_entry(root: Path, index: int, entry: Any) -> AtlasImage:
    at = f"atlas folder {root}, atlases[{index}]"
    if not isinstance(entry, dict) or any(k not in entry for k in ("name", "ct", "labels", "names")):
        raise InputError(f"{at}: needs the keys name, ct, labels, names")
    ct, ct_grid = _read_nifti(root / entry["ct"], at)
    raw, label_grid = _read_nifti(root / entry["labels"], at)
    if not np.all(np.isfinite(ct)) or ct.min() > -500 or ct.max() < 0:
        raise InputError(f"{at}: {entry['ct']} does not look like a CT in HU (range {ct.min():.0f}..{ct.max():.0f})")
    if not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(raw, np.round(raw)):
        raise InputError(f"{at}: {entry['labels']} must hold integer labels")
    _check_overlap(ct_grid, label_grid, at)
    table = read_name_table(root / entry["names"])
    labels = renumber(np.asarray(raw).astype(np.int64), table, at)
    regions = entry.get("regions", {})
    if not isinstance(regions, dict):
        raise InputError(f"{at}: \"regions\" must be an object {{name: NIfTI path}}")
    masks: dict[str, tuple[np.ndarray, Grid]] = {}
    for name, rel in regions.items():
        mask, mask_grid = _read_nifti(root / rel, at)
        _check_overlap(ct_grid, mask_grid, at)
        if not np.any(mask):
            raise InputError(f"{at}: region {name} ({rel}) is empty")
        masks[str(name)] = (np.asarray(mask) > 0, mask_grid)
    return AtlasImage(str(entry["name"]), ct.astype(np.float32), ct_grid, labels, label_grid, str(root), masks)


def _read_nifti(path: Path, at: str) -> tuple[np.ndarray, Grid]:
    try:
        return load_nifti(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{at}: cannot read {path} ({exc})") from exc
    except Exception as exc:  # nibabel raises its own types for damaged files
        raise InputError(f"{at}: cannot read {path} as NIfTI ({exc})") from exc


def _check_overlap(ct: Grid, labels: Grid, at: str) -> None:
    """The label map must overlap the CT's physical extent (a sign that both are in the same space)."""
    c, lab = corners_lps(ct), corners_lps(labels)
    lo, hi = np.maximum(c.min(axis=0), lab.min(axis=0)), np.minimum(c.max(axis=0), lab.max(axis=0))
    if np.any(hi <= lo):
        raise InputError(f"{at}: the label map lies outside the CT; both must be in the same physical space")


def read_name_table(path: Path) -> dict[int, str]:
    """Label value -> station name, from a stations.json-style list, a JSON object or a CSV file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"atlas name table {path}: cannot read ({exc.strerror})") from exc
    if Path(path).suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or not {"label", "station"} <= set(rows[0]):
            raise InputError(f"atlas name table {path}: a CSV table needs the columns label,station")
        pairs = [(r["label"], r["station"]) for r in rows]
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"atlas name table {path}: not valid JSON ({exc})") from exc
        if isinstance(data, list):
            pairs = [(e.get("label"), e.get("station")) for e in data if isinstance(e, dict)]
        elif isinstance(data, dict):
            pairs = list(data.items())
        else:
            raise InputError(f"atlas name table {path}: expected a list or an object")
    table: dict[int, str] = {}
    for value, name in pairs:
        try:
            table[int(value)] = str(name).strip()
        except (TypeError, ValueError):
            raise InputError(f"atlas name table {path}: label {value!r} is not an integer") from None
    if not table:
        raise InputError(f"atlas name table {path}: no entries")
    return table


def renumber(raw: np.ndarray, table: dict[int, str], at: str = "atlas") -> np.ndarray:
    """Map an atlas's own label values to the labels of `atlas/stations.json` (unlisted -> 0)."""
    ours = by_name()
    unknown = sorted({n for n in table.values() if n not in ours})
    if unknown:
        raise InputError(f"{at}: unknown station name(s) {', '.join(unknown)}; use the names of atlas/stations.json")
    lut_size = int(max(raw.max(initial=0), max(table))) + 1
    if raw.min(initial=0) < 0:
        raise InputError(f"{at}: negative label values in the label map")
    lut = np.zeros(lut_size, np.uint8)
    for value, name in table.items():
        if value > 0:
            lut[value] = ours[name].label
    return lut[raw]
