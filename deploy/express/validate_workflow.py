#!/usr/bin/env python3
"""Check a MONAI Deploy Workflow Manager workflow definition (JSON) as the Workflow Manager and its Task Manager do.

    python3 deploy/express/validate_workflow.py deploy/express/nstage-petct-workflow.json

Prints each error on its own line (`error: ...`, exit status 1) or `ok: ...`. The rules are those of
Project-MONAI/monai-deploy-workflow-manager (Apache-2.0; read at commit 9e10e950), re-stated here, rule
for rule, with the Workflow Manager's own messages where it has one:

- the JSON model (src/WorkflowManager/Contracts/Models/Workflow.cs, TaskObject.cs, InformaticsGateway.cs,
  TaskDestination.cs, ExportDestination.cs, ArtifactMap.cs, Artifact.cs): field names and JSON types.
  Newtonsoft matches names case-insensitively and ignores unknown ones; a field it would ignore is an
  error here, since it is a typo that would silently drop a setting;
- WorkflowValidator.ValidateWorkflowAsync (src/WorkflowManager/WorkflowManager/Validators/
  WorkflowValidator.cs), the check behind POST /workflows and POST /workflows/validate, for the task
  types `router`, `docker` and `export` (ValidationConstants.cs); other types are refused here;
- at run time, before a task runs: the Docker plug-in's ValidateEvent (src/TaskManager/Plug-ins/
  Docker/DockerPlugin.cs, Keys.cs: required arguments, `server_url` an absolute URI, every input and
  output artifact name mapped to a container path in `args`) and the artifact variables that
  ArtifactMapper.cs resolves (`{{ context.input.dicom }}`, `{{ context.executions.TASK.artifacts.NAME }}`,
  `{{ context.executions.TASK.output_dir }}`, split on spaces).

Not checkable without the services: whether a workflow of the same name is registered already, and
whether the `data_origins` are sources registered in the Informatics Gateway.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# JSON models: field -> type. A str names another model; [x] is a list of x; dict is a string map.
MODELS: dict[str, dict[str, Any]] = {
    "workflow": {"name": str, "version": str, "description": str, "informatics_gateway": "informatics_gateway",
                 "tasks": ["task"], "dataRetentionDays": int, "predicate": [str]},
    "informatics_gateway": {"ae_title": str, "data_origins": [str], "export_destinations": [str]},
    "task": {"id": str, "description": str, "type": str, "args": dict, "task_destinations": ["task_destination"],
             "export_destinations": ["export_destination"], "artifacts": "artifact_map", "timeout_minutes": float},
    "task_destination": {"name": str, "conditions": [str]},
    "export_destination": {"name": str},
    "artifact_map": {"input": ["artifact"], "output": ["output_artifact"]},
    "artifact": {"name": str, "value": str, "mandatory": bool},
    "output_artifact": {"name": str, "value": str, "mandatory": bool, "type": str},
}
TASK_TYPES = ("argo", "aide_clinical_review", "router", "export", "docker", "email", "remote_app_execution", "export_hl7")
CHECKED_TYPES = ("router", "docker", "export")
TASK_ID = re.compile(r"^[a-zA-Z0-9-_]+$")
DOCKER_REQUIRED_ARGS = ("server_url", "entrypoint", "command", "container_image", "temp_storage_container_path")


def _type_errors(value: Any, spec: Any, where: str) -> list[str]:
    """Errors of one JSON value against its model spec (Newtonsoft's binding, names case-insensitive)."""
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{where} must be a list"]
        return [e for i, item in enumerate(value) for e in _type_errors(item, spec[0], f"{where}[{i}]")]
    if isinstance(spec, str):
        if not isinstance(value, dict):
            return [f"{where} must be an object"]
        fields = {name.lower(): (name, sub) for name, sub in MODELS[spec].items()}
        errors = []
        for key, item in value.items():
            if key.lower() not in fields:
                errors.append(f"{where}.{key} is not a field of the Workflow Manager's {spec} (it would be ignored)")
            else:
                errors += _type_errors(item, fields[key.lower()][1], f"{where}.{key}")
        return errors
    if spec is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return [f"{where} must be an object of strings"]
        return []
    if spec is float:
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [f"{where} must be a number"]
    if spec is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where} must be a whole number"]
    return [] if isinstance(value, spec) else [f"{where} must be a {spec.__name__}"]


def _get(obj: dict, key: str, default: Any) -> Any:
    """A field as Newtonsoft binds it: case-insensitive name, the model's default when absent or null."""
    for name, value in obj.items():
        if name.lower() == key.lower() and value is not None:
            return value
    return default


class _Task:
    """A task object with the model's defaults filled in (TaskObject.cs)."""

    def __init__(self, raw: dict) -> None:
        self.id: str = _get(raw, "id", "")
        self.type: str = _get(raw, "type", "")
        self.args: dict[str, str] = _get(raw, "args", {})
        self.destinations: list[str] = [_get(d, "name", "") for d in _get(raw, "task_destinations", [])]
        self.exports: list[str] = [_get(d, "name", "") for d in _get(raw, "export_destinations", [])]
        artifacts = _get(raw, "artifacts", {})
        self.inputs: list[dict] = _get(artifacts, "input", [])
        self.outputs: list[dict] = _get(artifacts, "output", [])


def _gateway_errors(gateway: dict | None) -> list[str]:
    """ValidateInformaticsGateawayAsync (the data origins need the gateway: not checked)."""
    if gateway is None:
        return ["Missing InformaticsGateway section."]
    ae_title = _get(gateway, "ae_title", "")
    if not ae_title.strip() or len(ae_title) > 15:
        return ["AeTitle is required in the InformaticsGateaway section and must be under 16 characters."]
    return []


def _destination_errors(task: _Task, gateway_exports: list[str]) -> list[str]:
    """CheckDestinationInMigDestinations."""
    errors = []
    if task.exports and not gateway_exports:
        errors.append("InformaticsGateway ExportDestinations destinations can not be null with an Export Task.")
    for name in dict.fromkeys(task.exports):
        if name not in gateway_exports:
            errors.append(f"Task: '{task.id}' export_destination: '{name}' must be registered in the informatics_gateway object.")
    return errors


def _input_errors(task: _Task) -> list[str]:
    """ValidateInputs: every task but a router needs named input artifacts with values."""
    if task.type.lower() == "router":
        return []
    if not task.inputs:
        return [f"Task: '{task.id}' must have Input Artifacts specified."]
    errors = []
    if any(not _get(a, "name", "").strip() for a in task.inputs):
        errors.append(f"Task: '{task.id}' Input Artifacts must have a Name.")
    if any(not _get(a, "value", "").strip() for a in task.inputs):
        errors.append(f"Task: '{task.id}' Input Artifacts must have a Value.")
    return errors


def _task_errors(task: _Task, gateway_exports: list[str]) -> list[str]:
    """ValidateTaskOutputArtifacts and TaskTypeSpecificValidation for one task."""
    names = [_get(a, "name", "") for a in task.outputs]
    errors = [f"Task: '{task.id}' has multiple output names with the same value."] if len(names) != len(set(names)) else []
    kind = task.type.lower()
    if kind not in TASK_TYPES:
        return errors + [f"Task: '{task.id}' has an invalid type, please specify: {', '.join(TASK_TYPES)}"]
    if kind not in CHECKED_TYPES:
        return errors + [f"Task: '{task.id}' of type '{task.type}': this script checks only {', '.join(CHECKED_TYPES)} tasks"]
    errors += _input_errors(task)
    if kind == "export":
        if not task.exports:
            errors.append(f"Task: '{task.id}' does not contain a destination.")
        errors += _destination_errors(task, gateway_exports)
        if len(task.exports) != len(set(task.exports)):
            errors.append(f"Task: '{task.id}' contains duplicate destinations.")
        errors += _input_errors(task)
    return errors


def _graph_errors(tasks: list[_Task]) -> list[str]:
    """ValidateTasks' converging and duplicate checks, and DetectUnreferencedTasks."""
    root = tasks[0].id
    errors = []
    for task in tasks:
        if root in task.destinations:
            errors.append(f"Converging Tasks Destinations in task: {task.id} on root task: {root}")
        if sum(t.id == task.id for t in tasks) > 1:
            errors.append(f"Found duplicate task id '{task.id}'")
    destinations = [d for t in tasks for d in t.destinations]
    for dupe in dict.fromkeys(d for d in destinations if destinations.count(d) > 1):
        ids = ", ".join(t.id for t in tasks if dupe in t.destinations)
        errors.append(f"Converging Tasks Destinations in tasks: ({ids}) on task: {dupe}")
    unreferenced = [t.id for t in tasks[1:] if t.id != root and t.id not in destinations]
    if unreferenced:
        errors.append(f"Found Task(s) without any task destinations to it: {', '.join(unreferenced)}")
    return errors


def validate_workflow_manager(workflow: dict) -> list[str]:
    """The errors WorkflowValidator.ValidateWorkflowAsync reports for this workflow (empty: accepted)."""
    errors = _type_errors(workflow, "workflow", "workflow")
    if errors:
        return errors
    if not _get(workflow, "name", "").strip():
        errors.append("Missing Workflow Name.")
    if not _get(workflow, "version", "").strip():
        errors.append("Missing Workflow Version.")
    gateway = _get(workflow, "informatics_gateway", None)
    errors += _gateway_errors(gateway)
    tasks = [_Task(t) for t in _get(workflow, "tasks", [])]
    if not tasks:
        errors.append("Workflow does not contain Tasks, please review Workflow.")
        return errors
    errors += [f"TaskId: '{t.id}' Contains Invalid Characters." for t in tasks if not TASK_ID.match(t.id)]
    gateway_exports = _get(gateway or {}, "export_destinations", [])
    for task in tasks:
        errors += _task_errors(task, gateway_exports)
    errors += _graph_errors(tasks)
    for task in tasks:  # ValidateExportDestinations: every task that names export destinations
        if task.exports:
            errors += _destination_errors(task, gateway_exports)
    return errors


def _artifact_variable_errors(task: _Task, tasks: dict[str, _Task]) -> list[str]:
    """ArtifactMapper: a mandatory input artifact whose variable cannot be resolved fails the task."""
    errors = []
    for artifact in task.inputs:
        value, name = _get(artifact, "value", ""), _get(artifact, "name", "")
        words = value.split(" ")
        if len(words) < 2 or not value.startswith("{{") or not value.rstrip().endswith("}}"):
            errors.append(f"Task: '{task.id}' input artifact '{name}': '{value}' is not a variable of the form '{{{{ context... }}}}' "
                          "(the Workflow Manager splits it on spaces)")
            continue
        parts = words[1].split(".")
        if words[1].lower().startswith("context.input.dicom"):
            continue
        if len(parts) >= 4 and parts[0] == "context" and parts[1] == "executions":
            source = tasks.get(parts[2])
            if source is None:
                errors.append(f"Task: '{task.id}' input artifact '{name}' refers to task '{parts[2]}', which is not in the workflow")
            elif parts[3].lower() == "artifacts" and (len(parts) < 5 or parts[4] not in [_get(a, "name", "") for a in source.outputs]):
                errors.append(f"Task: '{task.id}' input artifact '{name}' refers to an output artifact that task '{source.id}' does not declare")
            elif parts[3].lower() not in ("artifacts", "output_dir"):
                errors.append(f"Task: '{task.id}' input artifact '{name}': '{parts[3]}' is neither 'artifacts' nor 'output_dir'")
            continue
        errors.append(f"Task: '{task.id}' input artifact '{name}': unknown variable '{words[1]}'")
    return errors


def _docker_errors(task: _Task) -> list[str]:
    """DockerPlugin.ValidateEvent: what the Task Manager refuses before it starts the container."""
    errors = [f"Task: '{task.id}' Required parameter to execute Argo workflow is missing: {key}"  # (sic: the plug-in's message)
              for key in DOCKER_REQUIRED_ARGS if key not in task.args]
    url = urlparse(task.args.get("server_url", ""))
    if "server_url" in task.args and not (url.scheme and (url.netloc or url.path)):
        errors.append(f"Task: '{task.id}' The value '{task.args['server_url']}' provided for 'server_url' is not a valid URI.")
    for artifact in task.inputs + task.outputs:
        name = _get(artifact, "name", "")
        if name not in task.args:
            errors.append(f"Task: '{task.id}' The mapping for storage '{name}' is not defined as an envrionment variable.")
        elif not task.args[name].startswith("/"):
            errors.append(f"Task: '{task.id}' storage '{name}' must map to an absolute path in the container, not '{task.args[name]}'")
    return errors


def validate_run_time(workflow: dict) -> list[str]:
    """Checks done when the workflow runs: the Docker plug-in's arguments, artifact variables, task destinations."""
    tasks = {t.id: t for t in (_Task(raw) for raw in _get(workflow, "tasks", []))}
    errors = []
    for task in tasks.values():
        errors += [f"Task: '{task.id}' task destination '{d}' is not a task of the workflow" for d in task.destinations if d not in tasks]
        errors += _artifact_variable_errors(task, tasks)
        if task.type.lower() == "docker":
            errors += _docker_errors(task)
    return errors


def validate(workflow: dict) -> list[str]:
    """All errors: the Workflow Manager's validation, then (when it passes) the run-time checks."""
    return validate_workflow_manager(workflow) or validate_run_time(workflow)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: validate_workflow.py WORKFLOW.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        workflow = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"error: cannot read {path} as JSON ({e})", file=sys.stderr)
        return 1
    errors = validate(workflow)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not errors:
        print(f"ok: {path} passes the Workflow Manager's validation and the Task Manager's Docker plug-in checks")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
