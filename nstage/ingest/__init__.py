"""Ingest: a folder of DICOM files in, one :class:`~nstage.ingest.study.Study` out.

Enters: DICOM files of a PET/CT study (any names and depth; or the SDK's selected series).
Leaves: the chosen CT (HU) and attenuation-corrected PET (SUV, float32) as volumes with their
grids (LPS) and source headers, or an InputError that names the series and attribute.
"""
