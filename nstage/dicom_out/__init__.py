"""DICOM outputs of the app: station SEG, TID 1500 SR, Encapsulated PDF report (new series of the source study).

Entry point: :func:`nstage.dicom_out.writer.write_dicom_outputs`. Codes, series numbers and file
names live in `config/dicom_output.json`.
"""

from nstage.dicom_out.writer import output_file_names, write_dicom_outputs

__all__ = ["output_file_names", "write_dicom_outputs"]
