"""Resolve what the caller named (a stack or a group) into the stack, its group and launch resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.rebuild.errors import BadRequest, TargetNotFound

ASG_TYPE = "AWS::AutoScaling::AutoScalingGroup"
LAUNCH_TYPES = ("AWS::EC2::LaunchTemplate", "AWS::AutoScaling::LaunchConfiguration")
STACK_TAG = "aws:cloudformation:stack-name"


@dataclass
class Target:
    """Plain data about one managed group and (optionally) the stack that owns it."""

    group: str
    group_logical_id: str | None = None
    stack: str | None = None
    stack_id: str | None = None
    stack_status: str | None = None
    stack_status_reason: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    resources: list[dict[str, str]] = field(default_factory=list)  # LogicalResourceId, ResourceType, PhysicalResourceId
    launch_logical_ids: list[str] = field(default_factory=list)
    group_data: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed_logical_ids(self) -> list[str]:
        """Resources a rebuild may change: the group and its launch template/configuration."""
        return [x for x in [self.group_logical_id, *self.launch_logical_ids] if x]

    @property
    def name(self) -> str:
        return self.stack or self.group


def _missing(exc: PhoenixAWSError) -> bool:
    text = (exc.message or "").lower()
    return exc.code in ("ValidationError", "ResourceNotFound") and ("does not exist" in text or "not found" in text)


def describe_group(aws: AWS, group: str) -> dict[str, Any]:
    groups = aws.call("autoscaling", "describe_auto_scaling_groups", f"group {group}",
                      AutoScalingGroupNames=[group]).get("AutoScalingGroups", [])
    if not groups:
        raise TargetNotFound(f"Auto Scaling group {group!r} does not exist in this region/account "
                             f"({aws.settings.describe()}); check the group name")
    return groups[0]


def describe_stack(aws: AWS, stack: str) -> dict[str, Any]:
    try:
        stacks = aws.call("cloudformation", "describe_stacks", f"stack {stack}", StackName=stack).get("Stacks", [])
    except PhoenixAWSError as exc:
        if _missing(exc):
            raise TargetNotFound(f"CloudFormation stack {stack!r} does not exist ({aws.settings.describe()}); "
                                 "check the stack name") from None
        raise
    if not stacks:
        raise TargetNotFound(f"CloudFormation stack {stack!r} does not exist")
    return stacks[0]


def _stack_of_group(aws: AWS, group: str, group_data: dict[str, Any]) -> str | None:
    for tag in group_data.get("Tags", []):
        if tag.get("Key") == STACK_TAG:
            return tag.get("Value")
    try:
        res = aws.call("cloudformation", "describe_stack_resources", f"group {group}", PhysicalResourceId=group)
    except PhoenixAWSError as exc:
        if not _missing(exc):
            raise
        res = {}
    for r in res.get("StackResources", []):
        if r.get("ResourceType") == ASG_TYPE and r.get("PhysicalResourceId") == group:
            return r.get("StackName")
    # Endpoints that neither tag the group nor answer DescribeStackResources by physical id (moto):
    # look through the live stacks (bounded: one call per stack).
    stacks = aws.paginate("cloudformation", "describe_stacks", "Stacks", "stacks")
    for s in stacks[:200]:
        if s.get("StackStatus", "").startswith("DELETE_"):
            continue
        resources = aws.paginate("cloudformation", "list_stack_resources", "StackResourceSummaries",
                                 f"stack {s['StackName']}", StackName=s["StackName"])
        if any(r.get("ResourceType") == ASG_TYPE and r.get("PhysicalResourceId") == group for r in resources):
            return s["StackName"]
    return None


def resolve(aws: AWS, stack: str | None = None, group: str | None = None) -> Target:
    """Find the group (and its stack). Either name may be given; both must agree when both are.

    Raises :class:`TargetNotFound` for unknown names and :class:`BadRequest` when a stack has no or
    several groups and ``group`` does not say which.
    """
    if not stack and not group:
        raise BadRequest("name a stack (stack=...) or an Auto Scaling group (group=...) to rebuild")
    group_data: dict[str, Any] | None = None
    if group and not stack:
        group_data = describe_group(aws, group)
        stack = _stack_of_group(aws, group, group_data)
    target = Target(group=group or "")
    if stack:
        s = describe_stack(aws, stack)
        target.stack = s["StackName"]
        target.stack_id = s.get("StackId")
        target.stack_status = s.get("StackStatus")
        target.stack_status_reason = s.get("StackStatusReason")
        target.parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in s.get("Parameters", [])}
        target.capabilities = list(s.get("Capabilities", []))
        resources = aws.paginate("cloudformation", "list_stack_resources", "StackResourceSummaries",
                                 f"stack {stack}", StackName=target.stack)
        target.resources = [
            {"LogicalResourceId": r["LogicalResourceId"], "ResourceType": r["ResourceType"],
             "PhysicalResourceId": r.get("PhysicalResourceId", "")}
            for r in resources
        ]
        groups = [r for r in target.resources if r["ResourceType"] == ASG_TYPE]
        if group:
            match = [r for r in groups if r["PhysicalResourceId"] == group or r["LogicalResourceId"] == group]
            if not match:
                raise TargetNotFound(
                    f"stack {target.stack!r} has no Auto Scaling group {group!r} (it has: "
                    f"{', '.join(r['PhysicalResourceId'] for r in groups) or 'none'})"
                )
            chosen = match[0]
        elif len(groups) == 1:
            chosen = groups[0]
        elif not groups:
            raise BadRequest(f"stack {target.stack!r} has no AWS::AutoScaling::AutoScalingGroup to rebuild")
        else:
            raise BadRequest(
                f"stack {target.stack!r} has {len(groups)} Auto Scaling groups; say which with group=... "
                f"({', '.join(r['PhysicalResourceId'] for r in groups)})"
            )
        target.group = chosen["PhysicalResourceId"]
        target.group_logical_id = chosen["LogicalResourceId"]
        if group_data is None or group_data.get("AutoScalingGroupName") != target.group:
            group_data = describe_group(aws, target.group)
    assert group_data is not None
    target.group_data = group_data
    target.launch_logical_ids = _launch_resources(target)
    return target


def launch_spec(group_data: dict[str, Any]) -> dict[str, str]:
    """The group's launch template (id/name/version) or launch configuration name."""
    lt = group_data.get("LaunchTemplate") or (
        group_data.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
    )
    if lt:
        return {k: str(v) for k, v in lt.items()}
    if group_data.get("LaunchConfigurationName"):
        return {"LaunchConfigurationName": group_data["LaunchConfigurationName"]}
    return {}


def _launch_resources(target: Target) -> list[str]:
    spec = launch_spec(target.group_data)
    physical = {spec.get("LaunchTemplateId"), spec.get("LaunchTemplateName"), spec.get("LaunchConfigurationName")}
    physical.discard(None)
    return [r["LogicalResourceId"] for r in target.resources
            if r["ResourceType"] in LAUNCH_TYPES and r["PhysicalResourceId"] in physical]
