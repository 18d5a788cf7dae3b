"""Synthetic PET/CT study generator with ground truth (anatomy, stations, disease, CT, PET, DICOM)."""
