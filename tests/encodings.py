"""Re-encode a written study as hospitals send it: compressed transfer syntaxes and enhanced objects.

- :data:`ENCODINGS`: name -> how a series folder is re-encoded, with an independent encoder where
  one exists (dcmtk's dcmcjpeg / dcmcjpls / dcmcrle / dcmconv) and pydicom's encoders for JPEG 2000
  (pylibjpeg-openjpeg) and deflate;
- :func:`reencode_study`: every file of a study in one encoding (other files copied);
- :func:`legacy_enhanced_study`: each image series as one Legacy Converted Enhanced object (highdicom.legacy);
- :func:`derived_suv_pet`: the PET as a workstation exports it, DERIVED\\SECONDARY in SUV (Units GML).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedPETImage
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000, JPEG2000Lossless, JPEGLSNearLossless, UID, generate_uid


@dataclass(frozen=True)
class Encoding:
    """One transfer syntax, how to write it, and how far decoded values may be from the original
    (in stored units; 0 for lossless)."""

    transfer_syntax: str
    encode: Callable[[Path, Path], None]
    max_stored_error: float = 0.0


def _dcmtk(*args: str) -> Callable[[Path, Path], None]:
    def run(src: Path, dst: Path) -> None:
        subprocess.run([*args, str(src), str(dst)], check=True, capture_output=True, text=True)
    return run


def _pydicom(syntax: UID, **options: object) -> Callable[[Path, Path], None]:
    def run(src: Path, dst: Path) -> None:
        ds = pydicom.dcmread(src)
        if syntax == DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = syntax
        else:
            ds.compress(syntax, **options)
        ds.save_as(dst, enforce_file_format=True)
    return run


ENCODINGS: dict[str, Encoding] = {
    "jpeg-lossless-sv1": Encoding("1.2.840.10008.1.2.4.70", _dcmtk("dcmcjpeg", "+e1")),
    "jpeg-lossless-sv6": Encoding("1.2.840.10008.1.2.4.57", _dcmtk("dcmcjpeg", "+el", "+sv", "6")),
    "jpeg-ls-lossless": Encoding("1.2.840.10008.1.2.4.80", _dcmtk("dcmcjpls", "+el")),
    # dcmcjpls refuses near-lossless for signed pixels (CT): pydicom's encoder (pyjpegls) writes it
    "jpeg-ls-near-lossless": Encoding(str(JPEGLSNearLossless), _pydicom(JPEGLSNearLossless, jls_error=2), max_stored_error=2.0),
    "rle": Encoding("1.2.840.10008.1.2.5", _dcmtk("dcmcrle")),
    "jpeg2000-lossless": Encoding(str(JPEG2000Lossless), _pydicom(JPEG2000Lossless)),
    "jpeg2000-lossy": Encoding(str(JPEG2000), _pydicom(JPEG2000, j2k_psnr=[90.0]), max_stored_error=float("inf")),
    "deflate": Encoding(str(DeflatedExplicitVRLittleEndian), _pydicom(DeflatedExplicitVRLittleEndian)),
    "big-endian": Encoding("1.2.840.10008.1.2.2", _dcmtk("dcmconv", "+tb")),
}
LOSSLESS = [name for name, e in ENCODINGS.items() if e.max_stored_error == 0.0]


def _is_image(path: Path) -> bool:
    try:
        return "PixelData" in pydicom.dcmread(path, stop_before_pixels=False, specific_tags=["PixelData"])
    except Exception:
        return False


def reencode_study(src: Path, dst: Path, name: str) -> Path:
    """A copy of the study folder ``src`` at ``dst`` with every image file in encoding ``name``."""
    encoding = ENCODINGS[name]
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if _is_image(path):
            encoding.encode(path, out)
            written = pydicom.dcmread(out, stop_before_pixels=True).file_meta.TransferSyntaxUID
            assert written == encoding.transfer_syntax, f"{name}: {out.name} written as {written}"
        else:
            shutil.copy2(path, out)
    return dst


def legacy_enhanced_study(src: Path, dst: Path, transfer_syntax: str | None = None) -> Path:
    """The study ``src`` with each CT and PET series as one Legacy Converted Enhanced object in ``dst``
    (frames uncompressed, or encoded in ``transfer_syntax`` by pydicom's encoders)."""
    classes = {"CT": LegacyConvertedEnhancedCTImage, "PT": LegacyConvertedEnhancedPETImage}
    series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        series[str(ds.SeriesInstanceUID)].append(ds)
    dst.mkdir(parents=True, exist_ok=True)
    for number, (uid, datasets) in enumerate(series.items(), start=1):
        cls = classes[datasets[0].Modality]
        enhanced = cls(datasets, series_instance_uid=hd.UID(), series_number=int(datasets[0].SeriesNumber) + 100,
                       sop_instance_uid=hd.UID(), instance_number=1)
        if transfer_syntax is not None:
            enhanced.compress(UID(transfer_syntax))  # every frame, signed CT pixels too
        enhanced.save_as(dst / f"{datasets[0].Modality.lower()}_enhanced_{number}.dcm", enforce_file_format=True)
    return dst


def derived_suv_pet(study: Path, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    """The study's PET as a workstation exports it in SUV: ImageType DERIVED\\SECONDARY, Units GML
    (SUVType BW), uint16 stored values on one rescale slope, a new series; ``drop`` removes attributes."""
    from nstage.ingest.study import load_study

    pet = load_study(study).pet
    slope = float(f"{float(pet.array.max()) / 65000.0:.6e}")
    series_uid = generate_uid()
    dst.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(pet.files):
        ds = pydicom.dcmread(path)
        ds.PixelData = np.rint(pet.array[k] / slope).astype(np.uint16).tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.6e}", "0"
        for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue", *drop):
            ds.pop(keyword, None)
        ds.ImageType, ds.Units, ds.SUVType = ["DERIVED", "SECONDARY"], "GML", "BW"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 1003, "PET SUV (workstation export)"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(dst / f"suv_{k:04d}.dcm", enforce_file_format=True)
    return dst
