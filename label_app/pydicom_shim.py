"""Import shim for the MONAI Label environment (.venv-label): `pydicom._storage_sopclass_uids` -> `pydicom.uid`.

pydicom 3 removed the private module `pydicom._storage_sopclass_uids`; pydicom-seg 0.4.1, which
monailabel 0.8.5 imports while the server starts, still imports `SegmentationStorage` from it, so
the server fails with "No module named 'pydicom._storage_sopclass_uids'" (MONAILabel issue #1841,
fixed on MONAILabel's main branch by PR #1879, not in a release). pydicom 3 keeps every storage SOP
class UID in `pydicom.uid`, so that module stands in for the old one.

The Makefile installs this file into .venv-label's site-packages with a `.pth` line that imports
it at interpreter start. It only adds a finder for that one module name: when a pydicom that has
the module again, or a monailabel / pydicom-seg that no longer imports it, is installed, the
finder is never consulted and the shim can be dropped (docs/monai-label.md).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

OLD = "pydicom._storage_sopclass_uids"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != OLD:
            return None
        for finder in sys.meta_path:  # the real module wins when a pydicom has it
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return importlib.import_module("pydicom.uid")

    def exec_module(self, module):
        return None


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.append(_Alias())
