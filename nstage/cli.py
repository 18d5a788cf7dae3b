"""The `nstage` command line (contracts.md). Sub-commands live in `nstage/commands/`."""

from __future__ import annotations

import argparse
import importlib
import sys

from nstage import __version__
from nstage.errors import InputError
from nstage.progress import configure_logging

COMMANDS = ("synth", "suv", "stations", "atlas", "run", "batch", "train", "fed", "evaluate", "route")  # modules of nstage.commands, in help order


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nstage", description="Mediastinal lymph node station assessment and N staging on FDG PET/CT.")
    p.add_argument("--version", action="version", version=f"nstage {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"nstage.commands.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
