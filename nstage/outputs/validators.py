"""Run the DICOM validators on written objects and collect their errors and warnings.

Tools (Debian packages, see scripts/install-system-deps.sh): ``dciodvfy`` (dicom3tools: IOD
and attribute checks), ``dcmdump`` (dcmtk: the file parses), ``dsrdump`` (dcmtk: the SR tree is
consistent) and pixelmed's ``DicomSRValidator -checktemplateid`` (SR templates such as TID 1500).
Which tools run depends on the object's SOP class (:func:`validate_file`).

Command line (no make needed): ``python -m nstage.outputs.validators FILE...`` prints every finding and
exits 1 when any tool reports an error (2 when a tool is missing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
# Java 17's XPath limits are too small for pixelmed's compiled SR templates (architecture.md).
JAVA_XPATH_FLAGS = ("-Djdk.xml.xpathExprGrpLimit=0", "-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathTotalOpLimit=0")
SR_VALIDATOR = "com.pixelmed.validate.DicomSRValidator"
LABELMAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"  # unknown to dicom3tools and dcmtk 3.6.7 (Debian bookworm)
TIMEOUT_S = 600


class ValidatorMissing(RuntimeError):
    """A validator program is not installed."""


@dataclass
class ToolReport:
    """What one validator said about one file."""

    tool: str
    path: Path
    returncode: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        lines = [f"{self.tool} {self.path.name}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"]
        lines += [f"  error: {e}" for e in self.errors] + [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(cmd[0]) is None:
        raise ValidatorMissing(f"{cmd[0]} is not installed (run scripts/install-system-deps.sh)")
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S, check=False)


def _split(text: str, error_prefixes: tuple[str, ...], warning_prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(error_prefixes):
            errors.append(s)
        elif s.startswith(warning_prefixes):
            warnings.append(s)
    return errors, warnings


def run_dciodvfy(path: Path) -> ToolReport:
    """dicom3tools' IOD checker; its lines begin ``Error -`` or ``Warning -`` (its exit status is 0 either way)."""
    p = _run(["dciodvfy", str(path)])
    out = p.stdout + p.stderr
    errors, warnings = _split(out, ("Error",), ("Warning",))
    if p.returncode != 0 and not errors:
        errors.append(f"dciodvfy exited with status {p.returncode}")
    return ToolReport("dciodvfy", Path(path), p.returncode, errors, warnings, out)


def _dcmtk(tool: str, path: Path, args: tuple[str, ...] = ()) -> ToolReport:
    p = _run([tool, *args, str(path)])
    errors, warnings = _split(p.stderr, ("E:", "F:"), ("W:",))
    if p.returncode != 0 and not errors:
        errors.append(f"{tool} exited with status {p.returncode}")
    return ToolReport(tool, Path(path), p.returncode, errors, warnings, p.stdout + p.stderr)


def run_dcmdump(path: Path) -> ToolReport:
    """dcmtk's dcmdump: the file parses from start to end."""
    return _dcmtk("dcmdump", path)


def run_dsrdump(path: Path) -> ToolReport:
    """dcmtk's dsrdump: the SR document tree reads with all its constraints checked."""
    return _dcmtk("dsrdump", path)


def run_sr_validator(path: Path) -> ToolReport:
    """pixelmed's DicomSRValidator with template checks (``-checktemplateid``)."""
    if not PIXELMED_JAR.exists():
        raise ValidatorMissing(f"{PIXELMED_JAR} is missing (Debian package pixelmed-apps)")
    p = _run(["java", *JAVA_XPATH_FLAGS, "-cp", str(PIXELMED_JAR), SR_VALIDATOR, "-checktemplateid", str(path)])
    out = p.stdout + p.stderr
    errors, warnings = _split(out, ("Error", "Exception"), ("Warning",))
    if "Root Template Validation Complete" not in out:
        errors.append("DicomSRValidator did not complete the template validation")
    if p.returncode != 0 and not errors:
        errors.append(f"DicomSRValidator exited with status {p.returncode}")
    return ToolReport("DicomSRValidator", Path(path), p.returncode, errors, warnings, out)


def tools_for(sop_class_uid: str, modality: str) -> list[str]:
    """Validator names that apply to an object (LABELMAP SEG: dcmdump only; dciodvfy predates it)."""
    if sop_class_uid == LABELMAP_SEGMENTATION:
        return ["dcmdump"]
    tools = ["dcmdump", "dciodvfy"]
    if modality == "SR":
        tools += ["dsrdump", "DicomSRValidator"]
    return tools


RUNNERS = {"dcmdump": run_dcmdump, "dciodvfy": run_dciodvfy, "dsrdump": run_dsrdump, "DicomSRValidator": run_sr_validator}


def validate_file(path: str | Path, skip: tuple[str, ...] = ()) -> list[ToolReport]:
    """Run every validator that applies to the object in ``path`` (minus ``skip``)."""
    path = Path(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return [RUNNERS[t](path) for t in tools_for(str(ds.SOPClassUID), str(ds.get("Modality", ""))) if t not in skip]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m nstage.outputs.validators FILE.dcm...", file=sys.stderr)
        return 2
    failed = False
    for name in args:
        try:
            reports = validate_file(Path(name))
        except ValidatorMissing as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for r in reports:
            print(r.summary())
            failed |= not r.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
