#!/usr/bin/env python3
"""The MAP's manifests (app.json, pkg.json) and labels, made from app.yaml by holoscan-cli 4.2.0's own packager code.

`monai-deploy package` parses its command line, builds `PackagingArguments` (which reads app.yaml, the
models folder and the installed SDK versions and fills in both manifests) and writes the manifests
before it builds any image. This script runs exactly those steps, with the packager's own parser and
classes, and stops there: no container engine, no download. So the manifests cannot drift from the
packager's format. The Dockerfile runs it at build time:

    python3 manifests.py /etc/holoscan --labels LABELS_FILE --app APP_PY --config APP_YAML \
        --models MODELS/station_cnn --docs DOCS --source artifacts.json

writes app.json and pkg.json into /etc/holoscan and, with --labels, the values the packager puts in
the image's labels as KEY=VALUE lines (scripts/build-image.sh passes them to the Dockerfile's last stage).

Two choices make it work offline:
- `--source`: the packager downloads its artifact manifest from GitHub unless given a local one; and
  4.2.0's own manifest lists Holoscan up to 4.2.0, so the lock's holoscan-cu13 4.6.0 fails its version
  check (`InvalidSdkError`). deploy/map/artifacts.json carries a 4.6.0 entry. Of that entry the
  manifests use nothing; a packager build of a Python app would take `wheel-version` and `base-images`.
- `--models MODELS/station_cnn`, not `MODELS`: the packager names every file in the folder given as
  one model named after the folder, so `models/README.md` (the model card) would add a model `models`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PLATFORM = "x86_64"  # the packager's x64-workstation / dgpu platform
IMAGE_NAME = "nstage-app"  # the packager's --tag; it names the image only, never a manifest field


@dataclass(frozen=True)
class MapSources:
    """What `monai-deploy package` is given: the app, its configuration, the models, the docs, the artifact source."""

    app: Path = REPO / "app.py"
    config: Path = REPO / "app.yaml"
    models: Path = REPO / "models" / "station_cnn"
    docs: Path = REPO / "docs"
    source: Path = HERE / "artifacts.json"

    def argv(self) -> list[str]:
        """The `monai-deploy package` command line these sources make."""
        return ["monai-deploy", "package", str(self.app), "--config", str(self.config), "--models", str(self.models),
                "--docs", str(self.docs), "--source", str(self.source), "--platform", PLATFORM, "--sdk", "monai-deploy",
                "--tag", IMAGE_NAME]


@contextmanager
def packaging_arguments(sources: MapSources) -> Iterator[tuple[object, Path]]:
    """holoscan-cli's PackagingArguments for these sources, and the temporary folder the packager works in."""
    from holoscan_cli.__main__ import parse_args
    from holoscan_cli.packager.arguments import PackagingArguments

    args = parse_args(sources.argv())
    with tempfile.TemporaryDirectory(prefix="holoscan_tmp") as tmp:
        yield PackagingArguments(args, tmp), Path(tmp)


def _label_values(packaging) -> dict[str, str]:
    """The values the packager's Dockerfile template puts in the labels, named as our Dockerfile's build arguments."""
    build = packaging.build_parameters
    return {
        "MAP_TITLE": build.title,
        "MAP_VERSION": str(build.version),
        "HOLOSCAN_SDK_VERSION": build.holoscan_sdk_version,
        "MONAI_DEPLOY_APP_SDK_VERSION": build.monai_deploy_app_sdk_version,
    }


def label_values(sources: MapSources) -> dict[str, str]:
    """The packager's label values for these sources."""
    with packaging_arguments(sources) as (packaging, _):
        return _label_values(packaging)


def write_manifests(sources: MapSources, out_dir: Path, labels: Path | None = None) -> tuple[Path, Path]:
    """Write app.json and pkg.json into out_dir with the packager's own writers (and the label values
    into `labels` as KEY=VALUE lines when given); the manifests' paths. Nothing is written when the
    packager refuses the sources."""
    from holoscan_cli.packager import packager

    with packaging_arguments(sources) as (packaging, tmp):
        packager._create_app_manifest(packaging.application_manifest, str(tmp))
        packager._create_package_manifest(packaging.package_manifest, str(tmp))
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in ("app.json", "pkg.json"):
            shutil.copyfile(tmp / "map" / name, out_dir / name)
            written.append(out_dir / name)
        if labels is not None:
            labels.parent.mkdir(parents=True, exist_ok=True)
            labels.write_text("".join(f"{key}={value}\n" for key, value in _label_values(packaging).items()))
    return written[0], written[1]


def _sources(args: argparse.Namespace) -> MapSources:
    return MapSources(app=args.app, config=args.config, models=args.models, docs=args.docs, source=args.source)


def main(argv: list[str] | None = None) -> int:
    """Write the manifests (and labels); 0 on success, 1 with an `error:` line when the packager refuses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where app.json and pkg.json go")
    parser.add_argument("--labels", type=Path, help="also write the label values (KEY=VALUE lines) to this file")
    defaults = MapSources()
    parser.add_argument("--app", type=Path, default=defaults.app)
    parser.add_argument("--config", type=Path, default=defaults.config)
    parser.add_argument("--models", type=Path, default=defaults.models)
    parser.add_argument("--docs", type=Path, default=defaults.docs)
    parser.add_argument("--source", type=Path, default=defaults.source)
    args = parser.parse_args(argv)
    try:
        for path in (*write_manifests(_sources(args), args.out_dir, args.labels), args.labels):
            if path is not None:
                print(f"wrote {path}")
    except Exception as e:  # the packager's own errors (InvalidSdkError, a missing app.yaml key, ...)
        print(f"error: the packager refused the MAP's sources: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
