"""What the stack's template says about the group: batch size, pause, signals and its size properties.

Read-only and pure apart from :func:`fetch` (one ``GetTemplate`` call). Only literal values and ``Ref`` to
a parameter are resolved; anything else (``Fn::If``, ``Fn::FindInMap``...) is reported as ``unknown`` so
the caller can say it cannot tell rather than guess.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from phoenix.aws import AWS

_PAUSE = re.compile(r"PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` ...)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def parse(body: Any) -> dict[str, Any]:
    """A template body (dict from boto3 for JSON, text for YAML/JSON) as a dict; ``{}`` if unreadable."""
    if isinstance(body, dict):
        return body
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        doc = yaml.load(body, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def fetch(aws: AWS, stack: str) -> dict[str, Any]:
    """The stack's current template (``GetTemplate``), parsed."""
    body = aws.call("cloudformation", "get_template", f"stack {stack}", StackName=stack).get("TemplateBody")
    return parse(body)


@dataclass
class Value:
    """A resolved template value: ``kind`` is literal | param | absent | unknown."""

    kind: str
    value: Any = None
    param: str | None = None


def resolve(node: Any, params: dict[str, str]) -> Value:
    if node is None:
        return Value("absent")
    if isinstance(node, dict):
        if set(node) == {"Ref"} and isinstance(node["Ref"], str):
            name = node["Ref"]
            if name in params:
                return Value("param", params[name], name)
        return Value("unknown", node)
    return Value("literal", node)


def references(template: dict[str, Any], param: str) -> list[str]:
    """Where ``param`` is used (``Ref`` or ``${param}`` in ``Fn::Sub``), as dotted paths."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("Ref") == param:
                found.append(path)
                return
            sub = node.get("Fn::Sub")
            text = sub[0] if isinstance(sub, list) and sub else sub
            if isinstance(text, str) and "${" + param + "}" in text:
                found.append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")

    walk({k: v for k, v in template.items() if k != "Parameters"}, "")
    return found


def pause_seconds(text: Any) -> float | None:
    """Seconds of an ISO 8601 ``PauseTime`` (``PT5M``); ``None`` when malformed."""
    if isinstance(text, (int, float)):
        return None
    match = _PAUSE.fullmatch(str(text))
    if not match:
        return None
    hours, minutes, secs = (int(x or 0) for x in match.groups())
    return float(hours * 3600 + minutes * 60 + secs)


def _int(value: Value) -> int | None:
    try:
        return int(value.value) if value.kind in ("literal", "param") else None
    except (TypeError, ValueError):
        return None


@dataclass
class GroupTemplate:
    """The group resource as the template defines it (resolved with the stack's current parameters)."""

    logical_id: str
    found: bool = False
    max_batch: int = 1
    min_in_service: int = 0
    pause: float = 0.0
    pause_text: str | None = None
    pause_problem: str | None = None
    wait_on_signals: bool = False
    rolling: bool = False
    ignore_unmodified_size: bool = False
    desired: Value = field(default_factory=lambda: Value("absent"))
    min_size: Value = field(default_factory=lambda: Value("absent"))
    max_size: Value = field(default_factory=lambda: Value("absent"))


def group_template(template: dict[str, Any], logical_id: str | None, params: dict[str, str]) -> GroupTemplate:
    """Read the group's UpdatePolicy and size properties from ``template``."""
    out = GroupTemplate(logical_id=logical_id or "?")
    resource = ((template.get("Resources") or {}).get(logical_id or "") or {}) if logical_id else {}
    if not resource:
        return out
    out.found = True
    props = resource.get("Properties") or {}
    out.desired = resolve(props.get("DesiredCapacity"), params)
    out.min_size = resolve(props.get("MinSize"), params)
    out.max_size = resolve(props.get("MaxSize"), params)
    policy = resource.get("UpdatePolicy") or {}
    scheduled = policy.get("AutoScalingScheduledAction") or {}
    out.ignore_unmodified_size = str(resolve(scheduled.get("IgnoreUnmodifiedGroupSizeProperties"), params).value
                                     ).lower() == "true"
    rolling = policy.get("AutoScalingRollingUpdate")
    if rolling is None:
        return out
    out.rolling = True
    out.max_batch = max(1, _int(resolve(rolling.get("MaxBatchSize"), params)) or 1)
    out.min_in_service = _int(resolve(rolling.get("MinInstancesInService"), params)) or 0
    out.wait_on_signals = str(resolve(rolling.get("WaitOnResourceSignals"), params).value).lower() == "true"
    pause = resolve(rolling.get("PauseTime"), params)
    if pause.kind in ("literal", "param"):
        out.pause_text = str(pause.value)
        seconds = pause_seconds(pause.value)
        if seconds is None:
            out.pause_problem = (f"PauseTime {pause.value!r} of {logical_id} is not an ISO 8601 duration such as PT5M "
                                 "(CloudFormation refuses the update)")
        elif seconds > 3600:
            out.pause_problem = f"PauseTime {pause.value} of {logical_id} is longer than CloudFormation's maximum PT1H"
        else:
            out.pause = seconds
    elif out.wait_on_signals:
        out.pause = 300.0  # with signals and no PauseTime, CloudFormation waits up to PT5M
    return out
