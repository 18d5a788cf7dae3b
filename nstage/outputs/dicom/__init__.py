"""DICOM outputs of the app: station SEG, TID 1500 SR, Encapsulated PDF report (new series of the source study).

Entry point: :func:`nstage.outputs.dicom.writer.write_dicom_outputs`. Codes, series numbers and file
names live in `config/dicom_output.json`.
"""

from nstage.outputs.dicom.writer import (
    SegObject,
    build_pdf_object,
    build_seg_object,
    build_sr_object,
    output_file_names,
    save_objects,
    write_dicom_outputs,
)

__all__ = ["SegObject", "build_pdf_object", "build_seg_object", "build_sr_object", "output_file_names", "save_objects", "write_dicom_outputs"]
