"""A stable study in the node's Orthanc -> a job in the queue (or a log line saying why not)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nstage.route.fingerprint import file_sha256, fingerprint, instances_digest
from nstage.route.layout import INSTANCES_FILE, input_dir, move_into_place, remove
from nstage.route.orthanc_api import OrthancClient
from nstage.route.queue import IGNORED, TERMINAL, JobQueue
from nstage.route.settings import NodeSettings

log = logging.getLogger("nstage.route")


@dataclass(frozen=True)
class IntakeResult:
    action: str  # "queued" | "ignored" | "unchanged" | "gone"
    job_id: int | None = None


def is_pet_ct(modalities: list[str], required: tuple[str, ...]) -> bool:
    """A study with at least one series of each required modality (CT and PT)."""
    return set(required) <= set(modalities)


def handle_stable_study(client: OrthancClient, queue: JobQueue, settings: NodeSettings, study_id: str) -> IntakeResult:
    """Check, download and fingerprint one stable study; enqueue it unless known or not PET/CT."""
    if not client.exists("studies", study_id):
        log.info("study %s: no longer in Orthanc, nothing to do", study_id)
        return IntakeResult("gone")
    modalities = client.study_modalities(study_id)
    study_uid = client.study(study_id).get("MainDicomTags", {}).get("StudyInstanceUID", "")
    if not is_pet_ct(modalities, settings.pet_ct_modalities):
        instances = client.study_instances(study_id)
        fp = fingerprint((i.sop_instance_uid, i.orthanc_id) for i in instances)
        reason = f"not a PET/CT study (series modalities: {', '.join(modalities) or 'none'})"
        job, created = queue.add(study_id, study_uid, "ignored:" + fp, len(instances), ",".join(modalities), state=IGNORED, error=reason,
                                 instances_digest=instances_digest(i.orthanc_id for i in instances))
        log.info("study %s ignored: %s%s", study_id, reason, "" if created else " (seen before)")
        if settings.delete_study_after_done:
            delete_instances(client, [i.orthanc_id for i in instances])
        return IntakeResult("ignored", job.id)

    # Only the CT and PET series are the pipeline's input: results of ours routed back by the PACS
    # (SEG, SR, PDF in the same study) leave the fingerprint unchanged and start no new run.
    instances = client.study_instances(study_id, settings.pet_ct_modalities)
    tmp = Path(tempfile.mkdtemp(prefix=f".incoming-{study_id}-", dir=settings.work / "inputs"))
    try:
        pairs = []
        for n, inst in enumerate(instances):
            dest = tmp / f"{n:05d}.dcm"
            client.download_instance(inst.orthanc_id, dest)
            pairs.append((inst.sop_instance_uid, file_sha256(dest)))
        fp = fingerprint(pairs)
        known = queue.find(study_id, fp)
        if known is not None:
            log.info("study %s unchanged since job %d (%s): not processed again", study_id, known.id, known.state)
            if known.state in TERMINAL and settings.delete_study_after_done:
                delete_instances(client, [i.orthanc_id for i in instances])
            return IntakeResult("unchanged", known.id)
        (tmp / INSTANCES_FILE).write_text(json.dumps([{"orthanc_id": i.orthanc_id, "sop_instance_uid": i.sop_instance_uid} for i in instances]))
        final = input_dir(settings.work, study_id, fp)
        if final.exists():  # downloaded before a crash, not yet enqueued
            remove(tmp)
        else:
            move_into_place(tmp, final)
        job, _ = queue.add(study_id, study_uid, fp, len(instances), ",".join(modalities),
                           instances_digest=instances_digest(i.orthanc_id for i in instances))
        older = queue.supersede_queued(study_id, job.id)
        for old in older:
            log.info("job %d superseded by job %d (the study changed before it ran)", old, job.id)
            remove(input_dir(settings.work, study_id, queue.get(old).fingerprint))
        log.info("study %s queued as job %d (%d instances, series %s)", study_id, job.id, len(instances), ",".join(modalities))
        return IntakeResult("queued", job.id)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def studies_without_a_job(client: OrthancClient, queue: JobQueue, settings: NodeSettings) -> list[str]:
    """Stable studies in Orthanc whose present content has no job.

    Orthanc keeps its stable-age timers in memory: a study that arrived shortly before the node was
    killed is never announced as stable after the restart. A study counts as known when one of its
    jobs recorded the instances it now holds (the digest of their Orthanc IDs: its PET/CT series for a
    job, all for an ignored one), so a new version with as many instances as an old one is not taken
    for it; jobs recorded before digests were kept are matched by their instance count. A study still
    receiving instances (not stable) is left to its StableStudy change.
    """
    missed = []
    for study_id in client.studies():
        if not client.study(study_id).get("IsStable", True):
            continue
        ids = client.study_instance_ids(study_id)
        pet_ct = [i for m, v in ids.items() if m in settings.pet_ct_modalities for i in v]
        every = [i for v in ids.values() for i in v]
        jobs = queue.jobs_of_study(study_id)
        digests = {j.instances_digest for j in jobs if j.instances_digest}
        counts = {j.n_instances for j in jobs if not j.instances_digest}
        if not ({instances_digest(pet_ct), instances_digest(every)} & digests or {len(pet_ct), len(every)} & counts):
            missed.append(study_id)
    return missed


def delete_instances(client: OrthancClient, orthanc_ids: list[str]) -> None:
    """Remove a processed study version from the node's Orthanc (only those instances: newer ones stay)."""
    for i in orthanc_ids:
        client.delete("instances", i)


def clean_incoming(work: Path) -> None:
    """Remove half-downloaded studies left by a killed worker."""
    inputs = Path(work) / "inputs"
    if inputs.is_dir():
        for p in inputs.iterdir():
            if p.name.startswith(".incoming-"):
                remove(p)

