"""The report as DICOM Encapsulated PDF (SOP class 1.2.840.10008.5.1.4.1.1.104.1).

The page itself is made elsewhere (nstage/outputs/report/); this module only wraps given PDF bytes in a
new series of the source study: patient and study modules copied from a CT header by highdicom,
Encapsulated Document Series (modality DOC), SC Equipment (conversion type from the config),
Encapsulated Document module with document title, concept name and the source images.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

from nstage.outputs.dicom.series import OutputSeries, coded, output_config

PDF_MAGIC = b"%PDF-"


def _source_instance(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def build_encapsulated_pdf(pdf_bytes: bytes, ct_header: Dataset, series: OutputSeries,
                           sources: Sequence[Dataset] = ()) -> hd.SOPClass:
    """An Encapsulated PDF instance of ``pdf_bytes`` in the study of ``ct_header``.

    ``sources`` (e.g. the SEG and SR written beside it) are listed in SourceInstanceSequence."""
    if not pdf_bytes.startswith(PDF_MAGIC):
        raise ValueError("the report is not a PDF document (it does not start with %PDF-)")
    cfg = output_config()["pdf"]
    kw = series.highdicom_kwargs()
    when = series.written_at
    doc = hd.SOPClass(
        study_instance_uid=ct_header.StudyInstanceUID,
        sop_class_uid=EncapsulatedPDFStorage,
        modality="DOC",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        specific_character_set=ct_header.get("SpecificCharacterSet"),
        **kw,
    )
    doc.copy_patient_and_study_information(ct_header)
    doc.ConversionType = cfg["conversion_type"]
    doc.BurnedInAnnotation = "YES"  # the page names the patient's study and findings
    doc.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    doc.DocumentTitle = cfg["document_title"]
    doc.ConceptNameCodeSequence = [coded(cfg["concept_name"])]
    if sources:
        doc.SourceInstanceSequence = [_source_instance(s) for s in sources]
    doc.MIMETypeOfEncapsulatedDocument = "application/pdf"
    data = bytes(pdf_bytes)
    doc.EncapsulatedDocumentLength = len(data)
    doc.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")  # OB values have even length
    return doc
