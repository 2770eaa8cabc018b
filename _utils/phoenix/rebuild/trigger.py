"""Trigger a cycle: plans are pure dicts (shown by dry runs), ``send_*`` make the one mutating call."""

from __future__ import annotations

from typing import Any

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.rebuild.errors import BadRequest, CycleInProgress
from phoenix.rebuild.options import RebuildOptions
from phoenix.rebuild.target import Target

#: DescribeStacks shows NoEcho parameter values as this mask; they must be passed with UsePreviousValue.
NO_ECHO_MASK = "****"


def plan_cloudformation(target: Target, options: RebuildOptions, timestamp: str,
                        override: dict[str, str] | None = None) -> dict[str, Any]:
    """UpdateStack arguments: same template, every parameter with its current value, a new timestamp.

    ``override`` replaces some parameter values: the DesiredCapacity parameter set to the group's current size
    (:func:`phoenix.rebuild.preflight.desired_override`), since CloudFormation applies the template's
    DesiredCapacity on every update and would scale an auto-scaled group back in.

    Parameters are passed explicitly (moto 5.2.5 fails ``UsePreviousValue`` for parameters that took
    their default); only NoEcho parameters, whose value AWS never shows, use ``UsePreviousValue``.
    """
    name = options.timestamp_parameter
    if name not in target.parameters:
        raise BadRequest(f"stack {target.stack} has no parameter {name}: add it to the template (and Ref it from "
                         "the launch template) or use strategy=instance_refresh")
    if target.parameters[name] == timestamp:
        raise BadRequest(f"{name} is already {timestamp!r}; pick a new value")
    params = []
    for key, value in target.parameters.items():
        if key == name:
            params.append({"ParameterKey": key, "ParameterValue": timestamp})
        elif override and key in override:
            params.append({"ParameterKey": key, "ParameterValue": str(override[key])})
        elif value == NO_ECHO_MASK:
            params.append({"ParameterKey": key, "UsePreviousValue": True})
        else:
            params.append({"ParameterKey": key, "ParameterValue": value})
    kwargs: dict[str, Any] = {"StackName": target.stack, "UsePreviousTemplate": True, "Parameters": params}
    if target.capabilities:
        kwargs["Capabilities"] = list(target.capabilities)
    return kwargs


def plan_instance_refresh(target: Target, options: RebuildOptions) -> dict[str, Any]:
    """StartInstanceRefresh arguments (rolling, every instance, honouring MinHealthyPercentage)."""
    # InstanceWarmup is always explicit: AWS's default is the group's HealthCheckGracePeriod (often 300 s)
    # per batch, while a Phoenix instance is only put InService after provisioning and its health check.
    prefs: dict[str, Any] = {"MinHealthyPercentage": options.min_healthy_percentage, "SkipMatching": False,
                             "InstanceWarmup": int(options.instance_warmup)}
    return {"AutoScalingGroupName": target.group, "Strategy": "Rolling", "Preferences": prefs}


_BUSY_CODES = ("InstanceRefreshInProgress",)


def send(aws: AWS, strategy: str, plan: dict[str, Any], target: Target) -> dict[str, Any]:
    """Make the mutating call. A concurrent update found by AWS becomes :class:`CycleInProgress`."""
    try:
        if strategy == "cloudformation":
            r = aws.call("cloudformation", "update_stack", f"stack {target.stack}", **plan)
            return {"stack_id": r.get("StackId")}
        r = aws.call("autoscaling", "start_instance_refresh", f"group {target.group}", **plan)
        return {"instance_refresh_id": r.get("InstanceRefreshId")}
    except PhoenixAWSError as exc:
        text = (exc.message or "").lower()
        if exc.code in _BUSY_CODES or ("in_progress" in text and "can not be updated" in text) or (
                "_in_progress state" in text):
            raise CycleInProgress(target.group, [{
                "code": "cycle_in_progress",
                "message": f"AWS refused to start: a rebuild cycle or another update is already running ({exc})",
                "fix": "wait for it to finish and run the cycle again"}]) from None
        raise
