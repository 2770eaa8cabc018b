"""CloudFormation API actions localcloud handles itself or completes after moto.

* CreateStack: moto creates; localcloud adds per-resource events, the lifecycle hooks moto ignores
  (``LifecycleHookSpecificationList`` and ``AWS::AutoScaling::LifecycleHook``) and MaxInstanceLifetime.
* UpdateStack: parameters resolved AWS's way (UsePreviousValue works for defaults), the stack policy
  enforced, and launch-template/ASG changes run as an AutoScalingRollingUpdate with rollback. Other
  updates go to moto.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import warnings
from typing import TYPE_CHECKING, Any

from moto.cloudformation.parsing import clean_json

from localcloud import cfn_template, notifications, stack_policy
from localcloud.asg_api import apply_hook_extras, set_max_instance_lifetime
from localcloud.awsquery import ApiRequest, AwsError, response_xml, validation_error
from localcloud.frontend import Forward, Interceptor, Response, xml_response
from localcloud.stack_update import GROUP, ROLLING_TYPES, StackUpdate, add_event

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

log = logging.getLogger(__name__)
SKIPPED_BY_MOTO = r"Tried to parse AWS::AutoScaling::LifecycleHook"  # localcloud creates those hooks itself

SERVICE = "cloudformation"
BUSY = ("_IN_PROGRESS",)


def interceptors(cloud: "LocalCloud") -> dict[str, Interceptor]:
    """The ``cloudformation:Action`` handlers, bound to ``cloud``."""

    def backend() -> Any:
        from localcloud import motoaccess

        return motoaccess.cloudformation(cloud.region)

    def find_stack(name: str | None, message: str) -> Any:
        try:
            return backend().get_stack(name or "")
        except Exception:
            raise validation_error(message.format(name=name)) from None

    def create_stack(req: ApiRequest, forward: Forward) -> Response:
        with warnings.catch_warnings():  # the cloud lock is held: no other request runs meanwhile
            warnings.filterwarnings("ignore", message=SKIPPED_BY_MOTO, category=UserWarning)
            response = forward()
        if not response[0].startswith("200"):
            return response
        stack = find_stack(req.get("StackName"), "Stack with id {name} does not exist")
        _after_create(cloud, stack)
        return response

    def update_stack(req: ApiRequest, forward: Forward) -> Response:
        name = req.get("StackName")
        stack = find_stack(name, "Stack [{name}] does not exist")
        # UPDATE_ROLLBACK_FAILED: only ContinueUpdateRollback or DeleteStack are allowed (README)
        if stack.status.endswith(BUSY) or stack.status in ("CREATE_FAILED", "ROLLBACK_COMPLETE", "DELETE_COMPLETE",
                                                           "UPDATE_ROLLBACK_FAILED", "ROLLBACK_FAILED"):
            raise validation_error(f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")
        if req.get_bool("UsePreviousTemplate"):
            body = stack.template if isinstance(stack.template, str) else cfn_template._canonical(stack.template)
        elif req.get("TemplateBody"):
            body = req.get("TemplateBody") or ""
        else:
            raise validation_error("localcloud supports UpdateStack with TemplateBody or UsePreviousTemplate only")
        template = cfn_template.parse(body)
        check_update_policies(template)
        # moto edits template_dict while creating resources: compare with the stored text instead
        old_template = (cfn_template.parse(stack.template) if isinstance(stack.template, str)
                        else copy.deepcopy(stack.template_dict))
        old_params = cfn_template.resolve_parameters(
            old_template, [{"ParameterKey": k, "ParameterValue": v} for k, v in stack.parameters.items()], None)
        params = cfn_template.resolve_parameters(template, req.members("Parameters"), old_params)
        changes = cfn_template.changed_resources(old_template, template, old_params, params)
        if not changes:
            raise validation_error("No updates are to be performed.")
        policy_body = req.get("StackPolicyDuringUpdateBody") or stack.policy
        policy = stack_policy.parse_policy(policy_body)
        stack.stack_status_reason = None
        update = StackUpdate(cloud, stack, body, template, params, changes)
        resources = {**(old_template.get("Resources") or {}), **(template.get("Resources") or {})}
        for logical_id, action in sorted(changes.items()):
            if action == "Add":
                continue
            kind = (resources.get(logical_id) or {}).get("Type", "")
            verb = "Update:Delete" if action == "Remove" else "Update:Modify"
            reason = stack_policy.denial(policy, verb, logical_id, kind)
            if reason:
                log.info("stack %s: update refused by the stack policy: %s", stack.name, reason)
                update.refuse(logical_id, kind, reason)
                return ok("UpdateStack", {"StackId": stack.stack_id})
        kinds = {(resources.get(lid) or {}).get("Type") for lid in changes}
        same_elsewhere = all(
            cfn_template._canonical((old_template.get("Resources") or {}).get(lid))
            == cfn_template._canonical((template.get("Resources") or {}).get(lid))
            for lid in resources if lid not in changes)
        if kinds <= ROLLING_TYPES and GROUP in kinds and all(a == "Modify" for a in changes.values()) \
                and same_elsewhere:
            cloud.stack_updates[stack.stack_id] = update
            update.begin()
            return ok("UpdateStack", {"StackId": stack.stack_id})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=SKIPPED_BY_MOTO, category=UserWarning)
            backend().update_stack(name=stack.name, template=body, role_arn=req.get("RoleARN"),
                                   parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                                   tags=None)
        stack.parameters = dict(params)
        _resource_events(cloud, stack, changes, resources, "UPDATE")
        return ok("UpdateStack", {"StackId": stack.stack_id})

    def cancel_update_stack(req: ApiRequest, forward: Forward) -> Response:
        stack = find_stack(req.get("StackName"), "Stack [{name}] does not exist")
        update = cloud.stack_updates.get(stack.stack_id)
        if stack.status != "UPDATE_IN_PROGRESS" or update is None:
            raise validation_error(f"CancelUpdateStack cannot be called from current stack status {stack.status}")
        update.cancelled = True
        return ok("CancelUpdateStack")

    def signal_resource(req: ApiRequest, forward: Forward) -> Response:
        stack = find_stack(req.get("StackName"), "Stack [{name}] does not exist")
        logical_id = req.get("LogicalResourceId") or ""
        if logical_id not in (stack.template_dict.get("Resources") or {}):
            raise validation_error(f"Resource [{logical_id}] does not exist in stack [{stack.name}]")
        status = req.get("Status")
        if status not in ("SUCCESS", "FAILURE"):
            raise validation_error(f"Status must be SUCCESS or FAILURE, got {status!r}")
        cloud.signals.setdefault((stack.name, logical_id), {})[req.get("UniqueId") or ""] = status
        return ok("SignalResource")

    def set_stack_policy(req: ApiRequest, forward: Forward) -> Response:
        find_stack(req.get("StackName"), "Stack with id {name} does not exist")
        body = req.get("StackPolicyBody")
        if body is not None:
            try:
                doc = json.loads(body)
            except ValueError as exc:
                raise validation_error(f"Error parsing stack policy: {exc}") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("Statement"), (list, dict)):
                raise validation_error("Stack policy must be a JSON object with a Statement")
        return forward()

    def needs_stack(message: str) -> Interceptor:
        def handler(req: ApiRequest, forward: Forward) -> Response:
            find_stack(req.get("StackName"), message)
            return forward()
        return handler

    def ok(action: str, result: dict | None = None) -> Response:
        return xml_response(response_xml(SERVICE, action, result))

    def describe_stacks(req: ApiRequest, forward: Forward) -> Response:
        response = forward()
        if not response[0].startswith("200"):
            return response
        return response[0], response[1], list_parameters_as_aws(response[2])

    return {
        f"{SERVICE}:CreateStack": create_stack,
        f"{SERVICE}:UpdateStack": update_stack,
        f"{SERVICE}:SignalResource": signal_resource,
        f"{SERVICE}:CancelUpdateStack": cancel_update_stack,
        f"{SERVICE}:DescribeStackEvents": needs_stack("Stack [{name}] does not exist"),
        f"{SERVICE}:GetStackPolicy": needs_stack("Stack with id {name} does not exist"),
        f"{SERVICE}:SetStackPolicy": set_stack_policy,
        f"{SERVICE}:DescribeStackResources": needs_stack("Stack with id {name} does not exist"),
        f"{SERVICE}:DescribeStacks": describe_stacks,
    }


_PY_LIST = re.compile(r"<ParameterValue>\[((?:'[^'<>]*'(?:, )?)*)\]</ParameterValue>")


def list_parameters_as_aws(body: bytes) -> bytes:
    """DescribeStacks with ``List<...>``/``CommaDelimitedList`` parameter values as AWS shows them
    (``subnet-a,subnet-b``, the text they were passed as); moto 5.2.5 renders the Python list
    (``['subnet-a', 'subnet-b']``), which a client passing the values back (rebuild.cycle does) would
    turn into a changed parameter and an update of every resource that uses it."""
    def join(match: re.Match[str]) -> str:
        items = re.findall(r"'([^'<>]*)'", match.group(1))
        return f"<ParameterValue>{','.join(items)}</ParameterValue>"

    text = body.decode()
    fixed = _PY_LIST.sub(join, text)
    if fixed == text:
        return body
    return fixed.encode()


PAUSE_TIME = re.compile(r"PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")


def check_update_policies(template: dict[str, Any]) -> None:
    """Refuse a template whose AutoScalingRollingUpdate PauseTime is malformed or above PT1H (AWS: "The
    maximum amount of time that you can specify for the pause time is one hour (PT1H)"; ISO 8601 format).
    A ``Ref`` is checked after parameters are resolved, by the rolling update itself."""
    for logical_id, resource in (template.get("Resources") or {}).items():
        rolling = ((resource or {}).get("UpdatePolicy") or {}).get("AutoScalingRollingUpdate") or {}
        pause = rolling.get("PauseTime")
        if pause is None or isinstance(pause, dict):
            continue
        pause_seconds(str(pause), logical_id)


def pause_seconds(text: str, logical_id: str) -> int:
    """Seconds of a PauseTime, or the ValidationError AWS gives for a bad one."""
    match = PAUSE_TIME.fullmatch(text)
    if not match:
        raise validation_error(f"Invalid PauseTime {text!r} for resource {logical_id}: use ISO 8601 duration format "
                               "PT#H#M#S, e.g. PT5M")
    hours, minutes, secs = (int(x or 0) for x in match.groups())
    total = hours * 3600 + minutes * 60 + secs
    if total > 3600:
        raise validation_error(f"PauseTime {text} for resource {logical_id} is longer than the maximum of PT1H")
    return total


def _resource_events(cloud: "LocalCloud", stack: Any, changes: dict[str, str], resources: dict[str, Any],
                     verb: str) -> None:
    """Insert per-resource events before the stack's final event (moto writes stack events only)."""
    final = stack.events.pop() if stack.events else None
    resource_map = stack.resource_map
    for logical_id in sorted(changes):
        kind = (resources.get(logical_id) or {}).get("Type", "")
        physical = str(getattr(resource_map._parsed_resources.get(logical_id), "physical_resource_id", "") or "")
        statuses = ("DELETE_IN_PROGRESS", "DELETE_COMPLETE") if changes[logical_id] == "Remove" else (
            ("CREATE_IN_PROGRESS", "CREATE_COMPLETE") if changes[logical_id] == "Add" else
            (f"{verb}_IN_PROGRESS", f"{verb}_COMPLETE"))
        for status in statuses:
            add_event(cloud, stack, logical_id, kind, status, physical_id=physical)
    if final is not None:
        final.timestamp = cloud.clock.datetime()
        stack.events.append(final)


def _after_create(cloud: "LocalCloud", stack: Any) -> None:
    """Finish what moto's create skips: resource events, lifecycle hooks, MaxInstanceLifetime, target
    group attributes."""
    template = stack.template_dict
    resources = template.get("Resources") or {}
    resource_map = stack.resource_map
    final = stack.events.pop() if stack.events and stack.events[-1].resource_status == "CREATE_COMPLETE" else None
    for logical_id, definition in resources.items():
        physical = getattr(resource_map._parsed_resources.get(logical_id), "physical_resource_id", "") or ""
        for status in ("CREATE_IN_PROGRESS", "CREATE_COMPLETE"):
            add_event(cloud, stack, logical_id, definition.get("Type", ""), status, physical_id=str(physical))
    if final is not None:
        final.timestamp = cloud.clock.datetime()
        stack.events.append(final)
    fleet = cloud.fleet
    backend = fleet.backend
    # moto creates target groups without their TargetGroupAttributes (deregistration delay...)
    for logical_id, definition in resources.items():
        if definition.get("Type") != "AWS::ElasticLoadBalancingV2::TargetGroup":
            continue
        target_group = resource_map._parsed_resources.get(logical_id)
        props = clean_json(copy.deepcopy(definition.get("Properties") or {}), resource_map)
        if target_group is not None and hasattr(target_group, "attributes"):
            for attribute in props.get("TargetGroupAttributes") or []:
                target_group.attributes[str(attribute["Key"])] = str(attribute["Value"])
    # hooks declared on the group exist before its first instances launch: they apply to them
    for logical_id, definition in resources.items():
        if definition.get("Type") != GROUP:
            continue
        group = resource_map._parsed_resources.get(logical_id)
        if group is None:
            continue
        props = clean_json(copy.deepcopy(definition.get("Properties") or {}), resource_map)
        if props.get("MaxInstanceLifetime") is not None:
            set_max_instance_lifetime(group, int(props["MaxInstanceLifetime"]))
        for spec in props.get("LifecycleHookSpecificationList") or []:
            hook = _create_hook(backend, group.name, spec)
            hook._lc_seq = -1
    fleet.reconcile()
    # separate AWS::AutoScaling::LifecycleHook resources are created after the group: later launches only
    for logical_id, definition in resources.items():
        if definition.get("Type") != "AWS::AutoScaling::LifecycleHook":
            continue
        props = clean_json(copy.deepcopy(definition.get("Properties") or {}), resource_map)
        spec = dict(props)
        spec.setdefault("LifecycleHookName", f"{stack.name}-{logical_id}")
        _create_hook(backend, str(props.get("AutoScalingGroupName")), spec)
    fleet.reconcile()


def _create_hook(backend: Any, group_name: str, spec: dict[str, Any]) -> Any:
    transition = spec.get("LifecycleTransition")
    if transition not in (notifications.LAUNCHING, notifications.TERMINATING):
        raise AwsError("ValidationError", f"Invalid LifecycleTransition {transition!r} for {group_name}")
    timeout = spec.get("HeartbeatTimeout")
    hook = backend.create_lifecycle_hook(name=spec.get("LifecycleHookName"), as_name=group_name,
                                         transition=transition, timeout=int(timeout) if timeout else None,
                                         result=spec.get("DefaultResult"))
    apply_hook_extras(hook, target=spec.get("NotificationTargetARN"), role=spec.get("RoleARN"),
                      metadata=spec.get("NotificationMetadata"))
    return hook
