"""Reading CloudFormation templates: parameters, references between resources, what an update changes."""

from __future__ import annotations

import json
import re
from typing import Any

from moto.cloudformation.models import Stack

from localcloud.awsquery import validation_error

SUB_REF = re.compile(r"\$\{(?!!)([A-Za-z0-9_:]+)(?:\.([A-Za-z0-9_.]+))?\}")


def parse(body: str) -> dict[str, Any]:
    """Parse a JSON or YAML template (short-form intrinsic tags included), like moto does."""
    try:
        template = Stack.parse_template(body)
    except Exception as exc:
        raise validation_error(f"Template format error: {exc}") from None
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise validation_error("Template format error: At least one Resources member must be defined.")
    return template


def resolve_parameters(template: dict[str, Any], given: list[dict[str, Any]],
                       previous: dict[str, str] | None) -> dict[str, str]:
    """Parameter values (as strings) for a create/update, AWS's way.

    ``UsePreviousValue`` takes the value the stack has now (including values that came from a
    default at create time: moto fails on those); a parameter not passed takes its default; one with
    neither is an error.
    """
    declared = template.get("Parameters", {}) or {}
    passed = {p.get("ParameterKey"): p for p in given}
    values: dict[str, str] = {}
    missing = []
    for name, decl in declared.items():
        entry = passed.get(name)
        if entry is not None and str(entry.get("UsePreviousValue", "")).lower() == "true":
            if previous is None or name not in previous:
                raise validation_error(f"Invalid input for parameter key {name}. Cannot specify usePreviousValue "
                                       "as true for a parameter key not in the previous template")
            values[name] = previous[name]
        elif entry is not None and "ParameterValue" in entry:
            values[name] = str(entry["ParameterValue"])
        elif "Default" in decl:
            default = decl["Default"]
            values[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        else:
            missing.append(name)
    if missing:
        raise validation_error(f"Parameters: [{', '.join(missing)}] must have values")
    unknown = [k for k in passed if k not in declared]
    if unknown:
        raise validation_error(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    return values


def references(node: Any) -> set[tuple[str, str | None]]:
    """Every (name, attribute) a template fragment points at: Ref (attribute None), GetAtt, Sub."""
    found: set[tuple[str, str | None]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add((value, None))
            elif key == "Fn::GetAtt":
                parts = value.split(".", 1) if isinstance(value, str) else list(value)
                if parts and isinstance(parts[0], str):
                    found.add((parts[0], str(parts[1]) if len(parts) > 1 else ""))
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else (value[0] if value else "")
                local = set(value[1]) if isinstance(value, list) and len(value) > 1 and isinstance(value[1], dict) else set()
                for name, attr in SUB_REF.findall(text or ""):
                    if name not in local:
                        found.add((name, attr or None))
                if isinstance(value, list) and len(value) > 1:
                    found |= references(value[1])
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def changed_resources(old_template: dict[str, Any], new_template: dict[str, Any], old_params: dict[str, str],
                      new_params: dict[str, str]) -> dict[str, str]:
    """Logical id -> action ("Modify", "Add", "Remove") of every resource an update touches.

    A resource changes when its definition changes, when it refers to a changed parameter (Ref or
    Sub), or when it reads an attribute (GetAtt, ``${X.Attr}``) of a changed resource.
    """
    old_res = old_template.get("Resources", {}) or {}
    new_res = new_template.get("Resources", {}) or {}
    changed_params = {k for k in set(old_params) | set(new_params) if old_params.get(k) != new_params.get(k)}
    actions: dict[str, str] = {}
    for logical_id in old_res:
        if logical_id not in new_res:
            actions[logical_id] = "Remove"
    for logical_id, definition in new_res.items():
        if logical_id not in old_res:
            actions[logical_id] = "Add"
        elif _canonical(definition) != _canonical(old_res[logical_id]):
            actions[logical_id] = "Modify"
        elif any(name in changed_params for name, _ in references(definition)):
            actions[logical_id] = "Modify"
    grew = True
    while grew:
        grew = False
        for logical_id, definition in new_res.items():
            if logical_id in actions:
                continue
            if any(attr is not None and name in actions for name, attr in references(definition)):
                actions[logical_id] = "Modify"
                grew = True
    return actions


def _canonical(node: Any) -> str:
    return json.dumps(node, sort_keys=True, default=str)
