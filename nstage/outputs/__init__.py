"""Outputs: one analysed study written as the files a PACS and a radiologist read.

Enters: the analysis of a study (station map, measurements, calls, N stage, result document).
Leaves: DICOM SEG, TID 1500 SR and Encapsulated PDF (dicom/), the one-page report (report/),
result.json and the station map, all moved into the output folder at once (folder.py).
"""
