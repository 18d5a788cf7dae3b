"""The MAP image (Dockerfile, `make image`: nstage-app:latest) runs the app in a container.

- on the first small synthetic study, mounted read-only, as a non-root user, with the stack limit
  Holoscan wants: the container's result.json decides as `nstage run` on the host (the shipped model's
  probabilities to 1e-5), and its SEG, SR and PDF pass the validators;
- an empty study folder ends with an `error:` line and exit status 2 from the container.

The image is built by `make image` (a prerequisite of `make test`); the fixture calls the same script,
which only checks its cached layers when nothing changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

TAG = "nstage-app:latest"
USER = "4242:4242"  # no such user in the image or on the host: the app must not need one


def _engine() -> str | None:
    """As scripts/build-image.sh chooses: a Docker daemon that answers (not podman-docker's wrapper), else podman."""
    if shutil.which("docker") and "podman" not in subprocess.run(["docker", "--version"], capture_output=True, text=True).stdout.lower() \
            and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    return "podman" if shutil.which("podman") else None


ENGINE = _engine()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(ENGINE is None, reason="no container engine: neither a Docker daemon nor podman "
                                                                          "(scripts/setup-podman.sh installs podman on Debian)")]


@pytest.fixture(scope="module")
def image() -> str:
    done = subprocess.run(["bash", "scripts/build-image.sh"], cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return TAG


def _limits() -> list[str]:
    """--ulimit replaces the engine's defaults: give nofile and nproc again beside stack, within the host's hard limits."""
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    return ["--ulimit", "stack=33554432", "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def _run(image: str, study: Path, out: Path) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o777)
    cmd = [ENGINE, "run", "--rm", *_limits(), "--user", USER, "-v", f"{study}:/var/holoscan/input:ro", "-v", f"{out}:/var/holoscan/output", image]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


def test_container_decides_as_nstage_run_on_the_host(image: str, shipped_model_run: tuple[Path, Path], tmp_path: Path) -> None:
    from nstage.outputs.validators import validate_file

    case, ref_out = shipped_model_run
    out = tmp_path / "out"
    done = _run(image, case / "dicom", out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    ours, ref = (json.loads((d / "result.json").read_text()) for d in (out, ref_out))
    assert ours["n_stage"] == ref["n_stage"] and ours["tumour_side"] == ref["tumour_side"]
    assert ours["model"]["name"] == ref["model"]["name"]
    for station, values in ref["stations"].items():
        assert ours["stations"][station]["malignant"] == values["malignant"], station
        assert ours["stations"][station]["probability"] == pytest.approx(values["probability"], abs=1e-5), station
    assert {k: v.get("n_stage") for k, v in ours["baseline"].items()} == {k: v.get("n_stage") for k, v in ref["baseline"].items()}
    dicom = sorted(out.glob("*.dcm"))
    assert len(dicom) == 3
    for path in dicom:
        assert path.stat().st_uid == 4242  # written as the --user given, not as root
        for report in validate_file(path, skip=("DicomSRValidator",)):
            assert report.ok, report.summary()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_container_refuses_an_empty_study_with_an_error_line(image: str, tmp_path: Path) -> None:
    study = tmp_path / "empty"
    study.mkdir()
    out = tmp_path / "out"
    done = _run(image, study, out)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert list(out.iterdir()) == []
