"""Write an output folder through a staging folder, so that it never holds a partial result."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_output(final: Path, stale: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder next to `final`; on success move its content into `final`.

    A new `final` is the staging folder renamed. An existing `final` keeps its other files: each
    staged entry replaces the entry of the same name, and the names in `stale` that the staging
    folder does not hold are removed first (results of an earlier run that no longer apply).
    On an exception nothing in `final` changes and the staging folder is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=staging_parent(final)))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        yield staging
        publish(staging, final, stale)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def staging_parent(final: Path) -> Path:
    """Where to stage: beside `final`, or inside it when `final` is a mount point of its own file system.

    Renames only work within one file system; an output folder bind-mounted into a container
    (the MAP runner's /var/holoscan/output) is on another one than its parent, so staging there
    keeps every move a rename (atomic). A hidden staging folder inside `final` is removed at the end.
    """
    if final.is_dir() and not _same_device(final, final.parent):
        return final
    return final.parent


def _same_device(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def publish(staging: Path, final: Path, stale: Sequence[str] = ()) -> None:
    """Move the entries of `staging` into `final` (see :func:`staged_output`)."""
    if not final.exists():
        staging.rename(final)
        return
    if not final.is_dir():
        raise NotADirectoryError(f"{final} exists and is not a folder")
    new = {p.name for p in staging.iterdir()}
    for name in stale:
        old = final / name
        if name not in new and (old.exists() or old.is_symlink()):
            _remove(old)
    for entry in sorted(staging.iterdir(), key=lambda p: p.is_file()):  # folders first, files (manifests) last
        dest = final / entry.name
        if dest.is_dir() and not dest.is_symlink():
            backup = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old.", dir=final))
            os.replace(dest, backup / entry.name)
            os.replace(entry, dest)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(entry, dest)


def write_text_atomic(path: Path, text: str) -> bool:
    """Write a small text file through a rename, only when its content changes; True when it was written."""
    path, data = Path(path), text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
