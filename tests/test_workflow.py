"""The MONAI Deploy Express workflow definition (deploy/express/nstage-petct-workflow.json).

- it passes the Workflow Manager's validation and the Task Manager's Docker plug-in checks, as
  deploy/express/validate_workflow.py restates them from the Workflow Manager's source;
- each of a set of mistakes a person could make in it is caught, with the Workflow Manager's message;
- its Docker task starts the MAP as the MAP's manifest describes it (paths, image, entrypoint), and
  its export task sends that task's output to the gateway's registered destination;
- the checker's command line ends with `error:` lines and status 1 on a wrong workflow.
tests/test_image.py runs the Docker task's arguments against the built image.
"""

from __future__ import annotations

import copy
import json
import posixpath
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.express.validate_workflow import validate
from deploy.map.manifests import MapSources, write_manifests
from tests.conftest import REPO

WORKFLOW_PATH = REPO / "deploy" / "express" / "nstage-petct-workflow.json"
WORKFLOW = json.loads(WORKFLOW_PATH.read_text())


def _task(workflow: dict, task_id: str) -> dict:
    return next(t for t in workflow["tasks"] if t["id"] == task_id)


def test_the_workflow_passes_the_workflow_managers_checks() -> None:
    assert validate(WORKFLOW) == []


def _rename_task(w: dict) -> None:
    _task(w, "export-to-pacs")["id"] = "export to pacs"
    _task(w, "nstage")["task_destinations"][0]["name"] = "export to pacs"


MISTAKES: dict[str, tuple[Callable[[dict], None], str]] = {
    "AE title of 16 characters": (lambda w: w["informatics_gateway"].update(ae_title="NSTAGE-PETCT-MAP"), "AeTitle is required"),
    "no version": (lambda w: w.update(version=" "), "Missing Workflow Version."),
    "export destination not registered with the gateway": (
        lambda w: w["informatics_gateway"].update(export_destinations=["ORTHANC"]),
        "export_destination: 'PACS' must be registered in the informatics_gateway object."),
    "export task without a destination": (lambda w: _task(w, "export-to-pacs").update(export_destinations=[]), "does not contain a destination."),
    "task id with spaces": (_rename_task, "TaskId: 'export to pacs' Contains Invalid Characters."),
    "export task that no task leads to": (lambda w: _task(w, "nstage").update(task_destinations=[]),
                                          "Found Task(s) without any task destinations to it: export-to-pacs"),
    "a task leading back to the first": (lambda w: _task(w, "export-to-pacs").update(task_destinations=[{"name": "nstage"}]),
                                         "Converging Tasks Destinations in task: export-to-pacs on root task: nstage"),
    "export task without input artifacts": (lambda w: _task(w, "export-to-pacs")["artifacts"].update(input=[]),
                                            "must have Input Artifacts specified."),
    "unknown task type": (lambda w: _task(w, "nstage").update(type="container"), "has an invalid type"),
    "misspelt field, silently ignored by the Workflow Manager": (
        lambda w: _task(w, "nstage").update(task_destination=_task(w, "nstage").pop("task_destinations")), "would be ignored"),
    "a number among the string arguments": (lambda w: _task(w, "nstage")["args"].update(task_timeout_minutes=60),
                                            "args must be an object of strings"),
    "Docker task without its image": (lambda w: _task(w, "nstage")["args"].pop("container_image"), "is missing: container_image"),
    "Docker server that is no URI": (lambda w: _task(w, "nstage")["args"].update(server_url="docker.sock"), "is not a valid URI."),
    "output artifact not mapped to a container path": (lambda w: _task(w, "nstage")["args"].pop("env_HOLOSCAN_OUTPUT_PATH"),
                                                       "The mapping for storage 'env_HOLOSCAN_OUTPUT_PATH' is not defined"),
    "artifact variable without the spaces the Workflow Manager splits on": (
        lambda w: _task(w, "nstage")["artifacts"]["input"][0].update(value="{{context.input.dicom}}"), "is not a variable of the form"),
    "export of an output the MAP's task does not declare": (
        lambda w: _task(w, "export-to-pacs")["artifacts"]["input"][0].update(value="{{ context.executions.nstage.artifacts.output }}"),
        "refers to an output artifact that task 'nstage' does not declare"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_in_the_workflow_is_caught(mistake: str) -> None:
    mutate, message = MISTAKES[mistake]
    workflow = copy.deepcopy(WORKFLOW)
    mutate(workflow)
    errors = validate(workflow)
    assert any(message in e for e in errors), errors


def test_the_docker_task_starts_the_map_its_manifest_describes(tmp_path: Path) -> None:
    app_json, _ = write_manifests(MapSources(), tmp_path)
    app = json.loads(app_json.read_text())
    task, export = _task(WORKFLOW, "nstage"), _task(WORKFLOW, "export-to-pacs")
    args = task["args"]
    assert args["container_image"] == "nstage-app:latest"  # what `make image` tags
    assert args["entrypoint"] == "/var/holoscan/tools"
    for variable, artifacts in (("HOLOSCAN_INPUT_PATH", task["artifacts"]["input"]), ("HOLOSCAN_OUTPUT_PATH", task["artifacts"]["output"])):
        name = f"env_{variable}"  # mounted at this path and given to the app as this variable
        assert [a["name"] for a in artifacts] == [name]
        assert args[name] == posixpath.join(app["workingDirectory"], app["environment"][variable]).rstrip("/")
    assert task["artifacts"]["input"][0]["value"] == "{{ context.input.dicom }}"
    assert task["artifacts"]["output"][0]["mandatory"] is True  # a failed app leaves no output: the task fails, nothing is sent
    assert export["type"] == "export" and [d["name"] for d in export["export_destinations"]] == WORKFLOW["informatics_gateway"]["export_destinations"]
    assert export["artifacts"]["input"][0]["value"] == "{{ context.executions.nstage.artifacts.env_HOLOSCAN_OUTPUT_PATH }}"


def test_the_checker_command_line(tmp_path: Path) -> None:
    script = REPO / "deploy" / "express" / "validate_workflow.py"
    good = subprocess.run([sys.executable, str(script), str(WORKFLOW_PATH)], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and good.stdout.startswith("ok: ")
    wrong = copy.deepcopy(WORKFLOW)
    wrong["informatics_gateway"]["ae_title"] = ""
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(wrong))
    bad = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == ["error: AeTitle is required in the InformaticsGateaway section and must be under 16 characters."]
