"""PACS auto-routing node (`nstage route`): Orthanc receives PET/CT studies, a worker runs the
pipeline on each stable study and C-STOREs the DICOM results (SEG, SR, PDF) to the destination.

Modules: settings (route.json + command line), config (the generated Orthanc configuration),
orthanc_process / orthanc_api (the node's own Orthanc), queue (persistent SQLite job queue),
backoff, fingerprint, intake (stable study -> job), pipeline_runner (the pipeline in a
subprocess), sender (storescu), worker (the loop), supervisor (`serve`).
Log lines name jobs and Orthanc resource ids only, never patient names or IDs.
"""
