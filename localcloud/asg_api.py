"""Auto Scaling API actions localcloud answers itself (or completes after moto)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from localcloud.awsquery import ApiRequest, response_xml, validation_error
from localcloud.frontend import Forward, Interceptor, Response, xml_response

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

SERVICE = "autoscaling"

# Actions on one existing group: AWS answers ValidationError for an unknown name, moto may crash.
NEEDS_GROUP = ("DeleteAutoScalingGroup", "DescribeLifecycleHooks", "SuspendProcesses", "ResumeProcesses",
               "EnterStandby", "ExitStandby", "AttachInstances", "DetachInstances")


def interceptors(cloud: "LocalCloud") -> dict[str, Interceptor]:
    """The ``autoscaling:Action`` handlers, bound to ``cloud``."""

    def ok(action: str, result: dict | None = None) -> Response:
        return xml_response(response_xml(SERVICE, action, result))

    def require_group(req: ApiRequest, forward: Forward) -> Response:
        cloud.fleet.group(req.get("AutoScalingGroupName"))
        return forward()

    def put_lifecycle_hook(req: ApiRequest, forward: Forward) -> Response:
        name, group_name = req.get("LifecycleHookName"), req.get("AutoScalingGroupName")
        cloud.fleet.group(group_name)
        existing = cloud.fleet.backend.lifecycle_hooks.get(f"{group_name}_{name}")
        transition = req.get("LifecycleTransition") or getattr(existing, "lifecycle_transition", None)
        if transition not in ("autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"):
            raise validation_error(f"Invalid LifecycleTransition {transition!r}: use autoscaling:EC2_INSTANCE_LAUNCHING "
                                   "or autoscaling:EC2_INSTANCE_TERMINATING")
        timeout = req.get_int("HeartbeatTimeout")
        if timeout is not None and not 30 <= timeout <= 7200:
            raise validation_error(f"HeartbeatTimeout must be between 30 and 7200 seconds, got {timeout}")
        response = forward()
        hook = cloud.fleet.backend.lifecycle_hooks.get(f"{group_name}_{name}")
        if hook is not None:
            # an update keeps what it does not mention (moto would reset it to defaults)
            hook.lifecycle_transition = transition
            if existing is not None:
                if req.get("HeartbeatTimeout") is None:
                    hook.heartbeat_timeout = existing.heartbeat_timeout
                if req.get("DefaultResult") is None:
                    hook.default_result = existing.default_result

            def keep(param: str, attr: str) -> str | None:
                value = req.get(param)
                return value if value is not None else getattr(existing, attr, None)

            apply_hook_extras(hook, target=keep("NotificationTargetARN", "notification_target_arn"),
                              role=keep("RoleARN", "role_arn"),
                              metadata=keep("NotificationMetadata", "notification_metadata"), previous=existing)
        cloud.fleet.reconcile()
        return response

    def delete_lifecycle_hook(req: ApiRequest, forward: Forward) -> Response:
        group_name, name = req.get("AutoScalingGroupName"), req.get("LifecycleHookName")
        cloud.fleet.group(group_name)
        if cloud.fleet.backend.lifecycle_hooks.get(f"{group_name}_{name}") is None:
            raise validation_error(f"No Lifecycle Hook found with name '{name}' for group '{group_name}'")
        cloud.fleet.close_actions(group_name or "", name or "")
        return forward()

    def complete(req: ApiRequest, forward: Forward) -> Response:
        cloud.fleet.complete(req.get("AutoScalingGroupName"), req.get("LifecycleHookName"),
                             req.get("LifecycleActionResult"), token=req.get("LifecycleActionToken"),
                             instance_id=req.get("InstanceId"))
        return ok("CompleteLifecycleAction")

    def heartbeat(req: ApiRequest, forward: Forward) -> Response:
        cloud.fleet.heartbeat(req.get("AutoScalingGroupName"), req.get("LifecycleHookName"),
                              token=req.get("LifecycleActionToken"), instance_id=req.get("InstanceId"))
        return ok("RecordLifecycleActionHeartbeat")

    def terminate(req: ApiRequest, forward: Forward) -> Response:
        instance_id = req.get("InstanceId") or ""
        decrement = bool(req.get_bool("ShouldDecrementDesiredCapacity"))
        rec = cloud.fleet.terminate(instance_id, decrement=decrement, reason="terminated by user request")
        group = cloud.fleet.group(rec.group)
        activity = {
            "ActivityId": str(uuid.uuid4()),
            "AutoScalingGroupName": rec.group,
            "Description": f"Terminating EC2 instance: {instance_id}",
            "Cause": f"At {cloud.clock.iso()} instance {instance_id} was taken out of service in response to a "
                     f"user request{', shrinking the capacity' if decrement else ''}.",
            "StartTime": cloud.clock.iso(),
            "StatusCode": "InProgress",
            "Progress": 0,
            "Details": f'{{"Subnet ID":"","Availability Zone":"{group.availability_zones[0]}"}}',
        }
        return ok("TerminateInstanceInAutoScalingGroup", {"Activity": activity})

    def set_desired(req: ApiRequest, forward: Forward) -> Response:
        group = cloud.fleet.group(req.get("AutoScalingGroupName"))
        desired = req.get_int("DesiredCapacity")
        if desired is None:
            raise validation_error("DesiredCapacity is required")
        if desired > (group.max_size or 0):
            raise validation_error(f"New SetDesiredCapacity value {desired} is above max value {group.max_size} "
                                   "for the AutoScalingGroup.")
        if desired < (group.min_size or 0):
            raise validation_error(f"New SetDesiredCapacity value {desired} is below min value {group.min_size} "
                                   "for the AutoScalingGroup.")
        cloud.fleet.scale_in(group.name, desired)
        return forward()

    def create_or_update(req: ApiRequest, forward: Forward) -> Response:
        if req.action == "UpdateAutoScalingGroup":
            group = cloud.fleet.group(req.get("AutoScalingGroupName"))
            min_size = req.get_int("MinSize")
            max_size = req.get_int("MaxSize")
            min_size = group.min_size if min_size is None else min_size
            max_size = group.max_size if max_size is None else max_size
            desired = req.get_int("DesiredCapacity")
            if desired is None:
                desired = min(max(group.desired_capacity or 0, min_size or 0), max_size or 0)
            if not (min_size or 0) <= desired <= (max_size or 0):
                raise validation_error(f"Desired capacity:{desired} must be between the specified min size:"
                                       f"{min_size} and max size:{max_size}")
            cloud.fleet.scale_in(group.name, desired)
        lifetime = req.get_int("MaxInstanceLifetime")
        if lifetime is not None:
            check_max_instance_lifetime(lifetime)
        response = forward()
        if response[0].startswith("200"):
            group = cloud.fleet.backend.autoscaling_groups.get(req.get("AutoScalingGroupName"))
            if group is not None and lifetime is not None:
                set_max_instance_lifetime(group, lifetime)
        return response

    handlers: dict[str, Interceptor] = {f"{SERVICE}:{a}": require_group for a in NEEDS_GROUP}
    handlers.update({
        f"{SERVICE}:PutLifecycleHook": put_lifecycle_hook,
        f"{SERVICE}:DeleteLifecycleHook": delete_lifecycle_hook,
        f"{SERVICE}:CompleteLifecycleAction": complete,
        f"{SERVICE}:RecordLifecycleActionHeartbeat": heartbeat,
        f"{SERVICE}:TerminateInstanceInAutoScalingGroup": terminate,
        f"{SERVICE}:SetDesiredCapacity": set_desired,
        f"{SERVICE}:CreateAutoScalingGroup": create_or_update,
        f"{SERVICE}:UpdateAutoScalingGroup": create_or_update,
    })
    return handlers


def apply_hook_extras(hook: object, target: str | None, role: str | None, metadata: str | None,
                      previous: object | None = None) -> None:
    """Store what moto drops from a hook: the real notification target, role and metadata."""
    if previous is not None and hasattr(previous, "_lc_seq"):
        hook._lc_seq = previous._lc_seq  # type: ignore[attr-defined]
    if previous is not None and hasattr(previous, "_lc_notified_target"):
        hook._lc_notified_target = previous._lc_notified_target  # type: ignore[attr-defined]
    hook.notification_target_arn = target  # type: ignore[attr-defined]
    hook.role_arn = role  # type: ignore[attr-defined]
    hook.notification_metadata = metadata  # type: ignore[attr-defined]
    hook._lc_real_target = bool(target)  # type: ignore[attr-defined]


def check_max_instance_lifetime(seconds: int) -> None:
    """AWS allows 0 (none) or 86400..31536000 seconds."""
    if seconds != 0 and not 86400 <= seconds <= 31536000:
        raise validation_error("The maximum instance lifetime must be equal to 0, or between 86400 and "
                               f"31536000 seconds (inclusive); got {seconds}")


def set_max_instance_lifetime(group: object, seconds: int) -> None:
    """Keep MaxInstanceLifetime on the group (0 removes it)."""
    check_max_instance_lifetime(seconds)
    group.max_instance_lifetime = seconds or None  # type: ignore[attr-defined]
