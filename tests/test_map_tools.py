"""The MAP's entrypoint (deploy/map/tools.py, /var/holoscan/tools in the image), on the host.

- with no command it runs app.json's command with the arguments as given, and its exit status is the
  app's (the packager's tools.sh re-splits the arguments with `eval` and ends with status 0);
- `extract` copies only the part whose folder is mounted, as the packager's script does, and ends
  with an `error:` line when nothing is mounted;
- `show` prints the manifests it is pointed at.
tests/test_image.py runs the same commands in the built image.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.map import tools
from tests.conftest import REPO

TOOLS = REPO / "deploy" / "map" / "tools.py"


@pytest.fixture
def map_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A MAP laid out under tmp_path, the HOLOSCAN_* variables pointing at it."""
    app_json = tmp_path / "etc" / "app.json"
    app_json.parent.mkdir()
    command = [sys.executable, "-c", "import sys; print(sys.argv[1:]); sys.exit(3)"]
    app_json.write_text(json.dumps({"command": json.dumps(command), "version": "0.1.0"}))
    (tmp_path / "etc" / "pkg.json").write_text(json.dumps({"models": {"station_cnn": "/m/station_cnn"}}))
    (tmp_path / "app.yaml").write_text("application: {}\n")
    for part, name in (("app", "app.py"), ("models/station_cnn", "model.ts"), ("docs", "app.md")):
        (tmp_path / part).mkdir(parents=True)
        (tmp_path / part / name).write_text(part)
    for variable, path in (("HOLOSCAN_APP_MANIFEST_PATH", "etc/app.json"), ("HOLOSCAN_PKG_MANIFEST_PATH", "etc/pkg.json"),
                           ("HOLOSCAN_CONFIG_PATH", "app.yaml"), ("HOLOSCAN_APPLICATION", "app"),
                           ("HOLOSCAN_MODEL_PATH", "models"), ("HOLOSCAN_DOCS_PATH", "docs")):
        monkeypatch.setenv(variable, str(tmp_path / path))
    return tmp_path


def test_no_command_runs_the_app_with_its_arguments_and_exit_status(map_root: Path) -> None:
    done = subprocess.run([sys.executable, str(TOOLS), "-l", "INFO", "a b"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout.strip() == str(["-l", "INFO", "a b"])


def test_show_prints_both_manifests(map_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert tools.main(["show"]) == 0
    out = capsys.readouterr().out
    assert "app.json" in out and "pkg.json" in out and '"station_cnn": "/m/station_cnn"' in out
    assert tools.main(["show", "pkg"]) == 0
    assert "app.json" not in capsys.readouterr().out


def test_extract_copies_every_part_or_only_the_mounted_one(map_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    everything = tmp_path_factory.mktemp("export")
    assert tools.extract(everything) == ["app", "config", "models", "docs"]
    assert sorted(p.relative_to(everything).as_posix() for p in everything.rglob("*") if p.is_file()) == [
        "app/app.py", "config/app.json", "config/app.yaml", "config/pkg.json", "docs/app.md", "models/station_cnn/model.ts"]
    only_models = tmp_path_factory.mktemp("export")
    (only_models / "models").mkdir()
    assert tools.extract(only_models) == ["models"]
    assert sorted(p.name for p in only_models.iterdir()) == ["models"]


def test_extract_without_a_mounted_folder_is_an_error(map_root: Path, capsys: pytest.CaptureFixture) -> None:
    if tools.EXPORT_ROOT.exists():
        pytest.skip(f"{tools.EXPORT_ROOT} exists on this host")
    assert tools.main(["extract"]) == 1
    assert capsys.readouterr().err.startswith(f"error: no folder is mounted at {tools.EXPORT_ROOT}")


def test_a_manifest_without_a_command_is_an_error(map_root: Path, capsys: pytest.CaptureFixture) -> None:
    (map_root / "etc" / "app.json").write_text(json.dumps({"version": "0.1.0"}))
    assert tools.main([]) == 1
    assert capsys.readouterr().err.startswith("error: cannot read the app's command")
