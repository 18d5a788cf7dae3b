"""The MAP (Dockerfile, `make image`: nstage-app:latest) as the MONAI Deploy tools and a hospital's MONAI Deploy use it.

- the manifests read out of the image are those holoscan-cli 4.2.0's packager code makes from app.yaml,
  and the image agrees with them (environment, working directory, command, model and config paths);
- the labels and the default user are the packager's template's;
- `show` prints both manifests; `extract` writes the app, its manifests and configuration, the models
  and the docs into a mounted folder, as the user given;
- started with no arguments, on the first small synthetic study mounted read-only, as a non-root user
  (neither in the image nor on the host), with the stack limit Holoscan wants: result.json decides as
  `nstage run` on the host (the shipped model's probabilities to 1e-5), and its SEG, SR and PDF pass the
  validators; an empty study folder ends with an `error:` line and exit status 2 from the container;
- holoscan-cli 4.2.0's runner (`monai-deploy run`), called in-process against the image, checks for the
  buildx plug-in first, reads the image's manifests, maps them to mounts and environment and stops
  at the NVIDIA container runtime (none here);
- the MONAI Deploy Express workflow's Docker task (deploy/express/nstage-petct-workflow.json), run as
  the Task Manager's Docker plug-in runs it (entrypoint, command, environment, user, input and output
  mounts) on the study laid out as the Informatics Gateway stores it, decides as `nstage run`, and the
  files the export task sends (the *.dcm) are the SEG, the SR and the Encapsulated PDF.

The image is built by `make image` (a prerequisite of `make test`); the fixture calls the same script,
which only checks its cached layers when nothing changed.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.map.manifests import MapSources, write_manifests
from tests.conftest import REPO

TAG = "nstage-app:latest"
USER = "4242:4242"  # no such user in the image or on the host: the app must not need one
WORKFLOW = REPO / "deploy" / "express" / "nstage-petct-workflow.json"
APP_YAML = yaml.safe_load((REPO / "app.yaml").read_text())


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


def _assert_decides_as(out: Path, ref_out: Path, user_id: int) -> None:
    """out's result.json decides as ref_out's; its SEG, SR and PDF pass the validators and belong to user_id."""
    from nstage.outputs.validators import validate_file

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
        assert path.stat().st_uid == user_id  # written as the user the container runs as, not as root
        for report in validate_file(path, skip=("DicomSRValidator",)):
            assert report.ok, report.summary()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_container_decides_as_nstage_run_on_the_host(image: str, shipped_model_run: tuple[Path, Path], tmp_path: Path) -> None:
    case, ref_out = shipped_model_run
    out = tmp_path / "out"
    done = _run(image, case / "dicom", out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    _assert_decides_as(out, ref_out, 4242)


def test_container_refuses_an_empty_study_with_an_error_line(image: str, tmp_path: Path) -> None:
    study = tmp_path / "empty"
    study.mkdir()
    out = tmp_path / "out"
    done = _run(image, study, out)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


def _inspect(image: str, field: str) -> object:
    done = subprocess.run([ENGINE, "image", "inspect", image, "--format", "{{json ." + field + "}}"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _in_image(image: str, *command: str, user: str | None = None) -> subprocess.CompletedProcess:
    """Run a command in the image instead of its entrypoint."""
    extra = ["--user", user] if user else []
    return subprocess.run([ENGINE, "run", "--rm", *extra, "--entrypoint", command[0], image, *command[1:]],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def image_manifests(image: str) -> tuple[dict, dict]:
    """app.json and pkg.json as they are in the image."""
    return tuple(json.loads(_in_image(image, "cat", f"/etc/holoscan/{name}").stdout) for name in ("app.json", "pkg.json"))


def test_the_manifests_are_the_packagers_and_the_image_agrees(image: str, image_manifests: tuple[dict, dict], tmp_path: Path) -> None:
    app, pkg = image_manifests
    app_json, pkg_json = write_manifests(MapSources(), tmp_path)  # the packager's code on app.yaml, on the host
    assert app == json.loads(app_json.read_text()) and pkg == json.loads(pkg_json.read_text())
    env = dict(item.split("=", 1) for item in _inspect(image, "Config.Env"))
    for key, value in app["environment"].items():  # relative paths are the working directory's, as the runner maps them
        assert env[key].rstrip("/") == posixpath.join(app["workingDirectory"], value).rstrip("/"), key
    assert _inspect(image, "Config.WorkingDir") == app["workingDirectory"]
    assert env["HOLOSCAN_TIMEOUT"] == str(app["timeout"])
    python, script = json.loads(app["command"])
    paths = [script, app["environment"]["HOLOSCAN_CONFIG_PATH"], *pkg["models"].values(), pkg["applicationRoot"],
             f"{app['environment']['HOLOSCAN_DOCS_PATH']}/app.md", app["environment"]["HOLOSCAN_LOGS_PATH"]]
    done = _in_image(image, "sh", "-c", f'command -v {python} && ls -d "$@" >/dev/null', "sh", *paths)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/opt/holoscan/venv/bin/python3"  # the app's environment, as the image starts it


def test_labels_and_default_user_are_the_packagers(image: str, image_manifests: tuple[dict, dict]) -> None:
    import importlib.metadata

    app, _ = image_manifests
    labels = _inspect(image, "Config.Labels")
    assert labels["org.opencontainers.image.title"] == APP_YAML["application"]["title"]
    assert labels["org.opencontainers.image.version"] == str(APP_YAML["application"]["version"]) == app["version"]
    assert labels["org.monai.deploy.app-sdk"] == app["sdkVersion"]
    assert labels["org.nvidia.holoscan"] == importlib.metadata.version("holoscan-cu13")  # the lock's, in both environments
    env = dict(item.split("=", 1) for item in _inspect(image, "Config.Env"))
    assert env["HOLOSCAN_VERSION"] == labels["org.nvidia.holoscan"]
    assert _inspect(image, "Config.User") == "holoscan"
    assert _inspect(image, "Config.Entrypoint") == ["/var/holoscan/tools"]
    assert _in_image(image, "id").stdout.startswith("uid=1000(holoscan) gid=1000(holoscan) groups=1000(holoscan),27(sudo)")


def test_show_prints_both_manifests(image: str, image_manifests: tuple[dict, dict]) -> None:
    done = subprocess.run([ENGINE, "run", "--rm", image, "show"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    parts = re.split(r"^=+ (app|pkg)\.json =+$", done.stdout, flags=re.M)
    shown = {name: json.loads(text) for name, text in zip(parts[1::2], parts[2::2])}
    assert shown == {"app": image_manifests[0], "pkg": image_manifests[1]}


def test_extract_writes_app_models_docs_and_manifests(image: str, image_manifests: tuple[dict, dict], tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    os.chmod(export, 0o777)
    cmd = [ENGINE, "run", "--rm", "--user", USER, "-v", f"{export}:/var/run/holoscan/export", image, "extract"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in export.iterdir()) == ["app", "config", "docs", "models"]
    assert (export / "app" / "app.py").read_bytes() == (REPO / "app.py").read_bytes()
    assert (export / "app" / "operators").is_dir() and (export / "app" / "config").is_dir()
    assert (export / "models" / "station_cnn" / "model.ts").read_bytes() == (REPO / "models" / "station_cnn" / "model.ts").read_bytes()
    assert (export / "docs" / "app.md").is_file()
    assert [json.loads((export / "config" / name).read_text()) for name in ("app.json", "pkg.json")] == list(image_manifests)
    assert (export / "config" / "app.yaml").read_bytes() == (REPO / "app.yaml").read_bytes()
    assert {p.stat().st_uid for p in export.rglob("*")} == {4242}
    nothing_mounted = subprocess.run([ENGINE, "run", "--rm", image, "extract"], capture_output=True, text=True, timeout=120)
    assert nothing_mounted.returncode == 1
    assert nothing_mounted.stderr.startswith("error: no folder is mounted at /var/run/holoscan/export")


@pytest.fixture
def docker_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """holoscan-cli calls `docker`: with podman, a `docker` that is podman first on PATH."""
    if ENGINE == "podman":
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "docker").write_text('#!/bin/sh\nexec podman "$@"\n')
        (shim / "docker").chmod(0o755)
        monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")


def test_the_holoscan_runner_reads_the_map_and_stops_at_the_nvidia_runtime(
        image: str, image_manifests: tuple[dict, dict], docker_command: None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`monai-deploy run IMAGE -i STUDY -o OUT`, step by step, with holoscan-cli 4.2.0's own functions."""
    from holoscan_cli.__main__ import parse_args
    from holoscan_cli.runner import runner
    from holoscan_cli.runner.resources import get_shared_memory_size

    # 1. First of all it wants Docker's buildx plug-in (podman has none): `monai-deploy run` ends here with status 2.
    buildx = any(Path(d, "docker-buildx").is_file() for d in (Path.home() / ".docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
                                                             "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
                                                             "/usr/libexec/docker/cli-plugins"))
    assert runner._dependency_verification(image) is buildx
    assert buildx or '"docker-buildx" not installed' in caplog.text
    # 2. It copies the manifests out of the image (docker create / cp / rm) and reads them.
    app_info, pkg_info = runner._fetch_map_manifest(image)
    assert (app_info, pkg_info) == image_manifests
    assert runner._pkg_specific_dependency_verification(pkg_info)  # resources.gpu 0: no NVIDIA Container Toolkit demanded
    assert get_shared_memory_size(pkg_info, False, False, None, "config") == 1024 ** 3  # --shm-size config: sharedMemory 1Gi
    # 3. It maps the manifests to the container and creates it with the NVIDIA runtime.
    if shutil.which("nvidia-container-runtime"):
        pytest.skip("an NVIDIA container runtime is installed: `monai-deploy run` would start the app here")
    study, out = tmp_path / "study", tmp_path / "out"
    study.mkdir()
    out.mkdir()
    network = "podman" if ENGINE == "podman" else "bridge"  # the runner's default, `host`, is not a network podman lists
    common = ["monai-deploy", "run", image, "-i", str(study), "-o", str(out), "--network", network, "--shm-size", "config"]
    if not shutil.which("nvidia-smi"):
        with pytest.raises(FileNotFoundError, match="nvidia-smi"):  # it counts the host's GPUs unless --gpus is given
            runner._run_app(parse_args(common), app_info, pkg_info)
    with pytest.raises(Exception) as stop:
        runner._run_app(parse_args([*common, "--gpus", "all"]), app_info, pkg_info)
    message = str(stop.value)
    for part in ("--runtime nvidia", f"--volume {study}:/var/holoscan/input", f"--volume {out}:/var/holoscan/output",
                 "--env HOLOSCAN_INPUT_PATH=/var/holoscan/input", "--env HOLOSCAN_OUTPUT_PATH=/var/holoscan/output",
                 "--env HOLOSCAN_MODEL_PATH=/opt/holoscan/models", "--workdir /var/holoscan", "--ulimit stack=67108864"):
        assert part in message, part
    engine_says = message.split("The content of stderr is")[-1].lower()  # podman: default OCI runtime "nvidia" not found
    assert "runtime" in engine_says and "nvidia" in engine_says, message[-500:]


def _as_gateway_payload(study: Path, payload: Path) -> None:
    """The study as the Informatics Gateway stores it and the Task Manager hands it over:
    STUDY_UID/SERIES_UID/SOP_UID.dcm, each with its DICOM JSON beside it (.dcm.json)."""
    import pydicom

    for path in sorted(p for p in study.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        target = payload / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        header = pydicom.dcmread(path, stop_before_pixels=True)
        target.with_name(target.name + ".json").write_text(header.to_json())


def _give_to(path: Path, user: str) -> None:
    """What the Docker plug-in's SetPermission does (chown -R USER), or, not being root, open the folders to all."""
    uid, gid = (int(x) for x in user.split(":"))
    for p in [path, *path.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(p, uid, gid)
        elif p.is_dir():
            os.chmod(p, 0o777)


def test_the_express_workflow_task_runs_the_map(image: str, shipped_model_run: tuple[Path, Path], tmp_path: Path) -> None:
    task = next(t for t in json.loads(WORKFLOW.read_text())["tasks"] if t["type"] == "docker")
    args = task["args"]
    assert args["container_image"] == image
    (input_name,), (output_name,) = ([a["name"] for a in task["artifacts"][kind]] for kind in ("input", "output"))
    case, ref_out = shipped_model_run
    payload, out = tmp_path / "inputs" / input_name, tmp_path / "outputs" / output_name
    _as_gateway_payload(case / "dicom", payload)
    out.mkdir(parents=True)
    _give_to(tmp_path, args["user"])
    # DockerPlugin.BuildContainerSpecification: entrypoint and command split on commas, env_* as the
    # environment, each artifact mounted at the path its name maps to (inputs read-only), the user.
    cmd = [ENGINE, "run", "--rm", *_limits(), "--user", args["user"], "--entrypoint", json.dumps(args["entrypoint"].split(","))]
    cmd += [f"--env={key.removeprefix('env_')}={value}" for key, value in args.items() if key.startswith("env_")]
    cmd += ["-v", f"{payload}:{args[input_name]}:ro", "-v", f"{out}:{args[output_name]}", image, *args["command"].split(",")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    _assert_decides_as(out, ref_out, int(args["user"].split(":")[0]))
    import pydicom

    exported = [p for p in out.rglob("*") if p.suffix.lower() == ".dcm"]  # the export task sends *.dcm only
    assert sorted(str(pydicom.dcmread(p).SOPClassUID.name) for p in exported) == [
        "Comprehensive 3D SR Storage", "Encapsulated PDF Storage", "Segmentation Storage"]
