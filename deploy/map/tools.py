#!/usr/bin/env python3
"""/var/holoscan/tools: the MAP's self-describing entrypoint (the `tools` of holoscan-cli 4.2.0's packager, our own).

    tools show [app|pkg]   print the manifests (app.json, pkg.json)
    tools extract          copy the app, its manifests and configuration, the models and the docs into
                           the folder mounted at /var/run/holoscan/export (only one of app/, config/,
                           models/, docs/ when that sub-folder is what is mounted or already there)
    tools env              print the environment
    tools help             this text
    tools [ARGS...]        run the app: app.json's `command` with ARGS appended (no arguments: the
                           study in HOLOSCAN_INPUT_PATH, results in HOLOSCAN_OUTPUT_PATH)

It behaves as the packager's script (templates/tools.sh) does for these commands, with two differences
that matter to a MAP's user: the app's exit status is the container's (tools.sh ends with status 0 after
the app failed), and the app's arguments are passed as they are (tools.sh re-splits them with `eval`).
Standard library only: it runs with the image's python3 before anything else is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

EXPORT_ROOT = Path("/var/run/holoscan/export")
EXPORT_PARTS = ("app", "config", "models", "docs")


def _path(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or default)


def app_manifest_path() -> Path:
    return _path("HOLOSCAN_APP_MANIFEST_PATH", "/etc/holoscan/app.json")


def pkg_manifest_path() -> Path:
    return _path("HOLOSCAN_PKG_MANIFEST_PATH", "/etc/holoscan/pkg.json")


class ToolsError(Exception):
    """A command of this script cannot be done; the message is the `error:` line."""


def show(which: list[str]) -> None:
    """Print app.json and/or pkg.json, indented, each under a banner (as `tools show [app|pkg]`)."""
    wanted = {"app", "pkg"} & set(which) or {"app", "pkg"}
    for name, path in (("app", app_manifest_path()), ("pkg", pkg_manifest_path())):
        if name not in wanted:
            continue
        if not path.is_file():
            raise ToolsError(f"{path} does not exist: this image is not a complete MAP")
        print(f"{'=' * 30} {path.name} {'=' * 30}")
        print(json.dumps(json.loads(path.read_text()), indent=2))
        print()


def _copy_folder(source: Path, target: Path) -> None:
    if not source.is_dir():
        raise ToolsError(f"{source} does not exist in this image")
    shutil.copytree(source, target, dirs_exist_ok=True)


def _copy_config(target: Path) -> None:
    config = _path("HOLOSCAN_CONFIG_PATH", "/var/holoscan/app.yaml")
    target.mkdir(exist_ok=True)
    for source, name in ((app_manifest_path(), "app.json"), (pkg_manifest_path(), "pkg.json"), (config, config.name)):
        if not source.is_file():
            raise ToolsError(f"{source} does not exist in this image")
        shutil.copyfile(source, target / name)


def extract(root: Path = EXPORT_ROOT) -> list[str]:
    """Copy the parts of the MAP into the mounted export folder; the parts copied.

    The folder must be mounted from the host (and writable by the container's user). When one of
    app/, config/, models/ or docs/ exists in it, only that part is copied, as the packager's script does."""
    if not root.is_dir():
        raise ToolsError(f"no folder is mounted at {root}: create one on the host and mount it, "
                         f"e.g. -v \"$PWD/export:{root}\"")
    present = [part for part in EXPORT_PARTS if (root / part).is_dir()]
    parts = present[:1] or list(EXPORT_PARTS)
    target = root / parts[0] if present else root
    if not os.access(target, os.W_OK):
        raise ToolsError(f"{target} is not writable by this user ({os.getuid()}:{os.getgid()}): "
                         "create it on the host first and run with --user \"$(id -u):$(id -g)\"")
    copiers = {
        "app": lambda: _copy_folder(_path("HOLOSCAN_APPLICATION", "/opt/holoscan/app"), root / "app"),
        "config": lambda: _copy_config(root / "config"),
        "models": lambda: _copy_folder(_path("HOLOSCAN_MODEL_PATH", "/opt/holoscan/models"), root / "models"),
        "docs": lambda: _copy_folder(_path("HOLOSCAN_DOCS_PATH", "/opt/holoscan/docs"), root / "docs"),
    }
    for part in parts:
        copiers[part]()
        print(f"extracted {part} to {root / part}", file=sys.stderr)
    return parts


def print_env() -> None:
    """Print the environment, sorted (as `tools env`)."""
    for key in sorted(os.environ):
        print(f"{key}={os.environ[key]}")


def app_command() -> list[str]:
    """app.json's `command`: a JSON list stored as a string, as the packager writes it."""
    path = app_manifest_path()
    try:
        command = json.loads(json.loads(path.read_text())["command"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ToolsError(f"cannot read the app's command from {path} ({type(e).__name__}: {e})") from e
    if not isinstance(command, list) or not command or not all(isinstance(part, str) for part in command):
        raise ToolsError(f"the command in {path} is not a list of strings: {command!r}")
    return command


def run_app(args: list[str]) -> None:
    """Replace this process with the app (so its exit status and signals are the container's)."""
    command = app_command() + args
    print(f"tools: starting {' '.join(command)}", file=sys.stderr, flush=True)
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    """Dispatch on the first argument; 0 on success, 1 with an `error:` line when a command cannot be done."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    try:
        if command == "show":
            show(args[1:])
        elif command == "extract":
            extract()
        elif command == "env":
            print_env()
        elif command == "help":
            print(__doc__.split("\n\n")[1])
        else:
            run_app(args)
    except ToolsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
