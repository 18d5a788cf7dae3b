"""nstage: mediastinal lymph node station assessment and N-staging on FDG PET/CT.

The domain package: pure, typed, importable without holoscan.
"""

__version__ = "0.1.0"
