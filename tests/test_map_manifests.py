"""The MAP's manifests and labels, made from app.yaml by holoscan-cli 4.2.0's packager code (deploy/map/manifests.py).

Host-side, no container engine: the same code the Dockerfile runs, on the repository's files.
- app.json and pkg.json hold every key holoscan-cli 4.2.0's runner reads (runner.py, dockerutils.py,
  resources.py), with values from app.yaml, the installed SDKs and the packager's MAP layout;
- the models are the station model alone (the model card beside it is no model);
- the packager refuses an artifact source that does not know the locked Holoscan, and then
  nothing is written (the third stop of `monai-deploy package` offline);
- the label values are app.yaml's title and version and the installed SDK versions.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
import yaml

from deploy.map.manifests import MapSources, label_values, main, write_manifests
from tests.conftest import REPO

APP_YAML = yaml.safe_load((REPO / "app.yaml").read_text())
RUNNER_ENV = ("HOLOSCAN_APPLICATION", "HOLOSCAN_INPUT_PATH", "HOLOSCAN_OUTPUT_PATH", "HOLOSCAN_WORKDIR", "HOLOSCAN_MODEL_PATH",
              "HOLOSCAN_CONFIG_PATH", "HOLOSCAN_APP_MANIFEST_PATH", "HOLOSCAN_PKG_MANIFEST_PATH", "HOLOSCAN_DOCS_PATH",
              "HOLOSCAN_LOGS_PATH")


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    app_json, pkg_json = write_manifests(MapSources(), tmp_path_factory.mktemp("map"))
    return json.loads(app_json.read_text()), json.loads(pkg_json.read_text())


def test_app_json_holds_what_the_runner_reads(manifests: tuple[dict, dict]) -> None:
    app, _ = manifests
    assert json.loads(app["command"]) == ["python3", "/opt/holoscan/app/app.py"]  # tools runs this list
    assert app["workingDirectory"] == "/var/holoscan"
    assert app["input"] == {"path": "input/", "formats": APP_YAML["application"]["input-formats"]}
    assert app["output"] == {"path": "output/", "formats": APP_YAML["application"]["output-formats"]}
    assert set(app["environment"]) == set(RUNNER_ENV)
    assert app["environment"]["HOLOSCAN_CONFIG_PATH"] == "/var/holoscan/app.yaml"
    assert app["environment"]["HOLOSCAN_MODEL_PATH"] == "/opt/holoscan/models"
    assert app["sdk"] == "monai-deploy"
    assert app["sdkVersion"] == importlib.metadata.version("monai-deploy-app-sdk")
    assert app["version"] == str(APP_YAML["application"]["version"])
    assert app["apiVersion"] == "1.0.0" and app["timeout"] == 0


def test_pkg_json_holds_the_resources_and_the_one_model(manifests: tuple[dict, dict]) -> None:
    _, pkg = manifests
    assert pkg["resources"] == APP_YAML["resources"]  # gpu and sharedMemory: what `monai-deploy run` reads
    assert pkg["models"] == {"station_cnn": "/opt/holoscan/models/station_cnn"}
    assert (REPO / "models" / "station_cnn" / "model.ts").is_file()
    assert pkg["applicationRoot"] == "/opt/holoscan/app" and pkg["modelRoot"] == "/opt/holoscan/models"
    assert pkg["platformConfig"] == "dgpu"
    assert pkg["version"] == str(APP_YAML["application"]["version"])


def test_the_whole_models_folder_would_add_the_model_card_as_a_model(tmp_path: Path) -> None:
    _, pkg_json = write_manifests(MapSources(models=REPO / "models"), tmp_path)
    assert set(json.loads(pkg_json.read_text())["models"]) == {"models", "station_cnn"}  # why -m models/station_cnn


def test_the_packager_refuses_a_source_without_the_locked_holoscan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ours = json.loads((REPO / "deploy" / "map" / "artifacts.json").read_text())
    holoscan = importlib.metadata.version("holoscan-cu13")
    assert list(ours) == [holoscan]
    source = tmp_path / "artifacts-4.2.0.json"
    source.write_text(json.dumps({"4.2.0": ours[holoscan]}))
    out = tmp_path / "out"
    status = main([str(out), "--source", str(source), "--labels", str(out / "labels.env")])
    assert status == 1
    assert f"InvalidSdkError: Invalid SDK version specified ({holoscan})" in capsys.readouterr().err
    assert not out.exists()


def test_label_values_are_the_packagers(manifests: tuple[dict, dict], tmp_path: Path) -> None:
    labels = label_values(MapSources())
    write_manifests(MapSources(), tmp_path, tmp_path / "labels.env")
    assert (tmp_path / "labels.env").read_text().splitlines() == [f"{k}={v}" for k, v in labels.items()]
    assert labels == {
        "MAP_TITLE": APP_YAML["application"]["title"],
        "MAP_VERSION": str(APP_YAML["application"]["version"]),
        "HOLOSCAN_SDK_VERSION": importlib.metadata.version("holoscan-cu13"),
        "MONAI_DEPLOY_APP_SDK_VERSION": manifests[0]["sdkVersion"],
    }
