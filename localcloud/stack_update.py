"""CloudFormation stack updates that moto cannot do: parameter-only changes to a launch template and
its Auto Scaling group, replaced by an AutoScalingRollingUpdate (with rollback), and updates refused
by the stack policy. Stack and resource events are written into moto's stack, so DescribeStackEvents
and DescribeStacks report them.
"""

from __future__ import annotations

import copy
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from moto.cloudformation.models import Event
from moto.cloudformation.parsing import clean_json
from moto.ec2.utils import parse_user_data

from localcloud import cfn_template, motoaccess
from localcloud.records import TERMINATING_STATES
from localcloud.replacement import BatchLimits, ReplacementFailed, replace_instances

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

log = logging.getLogger(__name__)

LAUNCH_TEMPLATE = "AWS::EC2::LaunchTemplate"
GROUP = "AWS::AutoScaling::AutoScalingGroup"
ROLLING_TYPES = frozenset({LAUNCH_TEMPLATE, GROUP})


def add_event(cloud: "LocalCloud", stack: Any, logical_id: str, resource_type: str, status: str,
              reason: str | None = None, physical_id: str | None = None) -> None:
    """Append a stack or resource event with the virtual clock's time."""
    is_stack = resource_type == "AWS::CloudFormation::Stack"
    event = Event(stack_id=stack.stack_id, stack_name=stack.name,
                  logical_resource_id=stack.name if is_stack else logical_id,
                  physical_resource_id=stack.stack_id if is_stack else (physical_id or ""),
                  resource_type=resource_type, resource_status=status, resource_status_reason=reason,
                  resource_properties=None)
    event.timestamp = cloud.clock.datetime()
    stack.events.append(event)


def stack_event(cloud: "LocalCloud", stack: Any, status: str, reason: str | None = None) -> None:
    """A stack-level event, and the stack's status."""
    stack.status = status
    stack.stack_status_reason = reason
    add_event(cloud, stack, stack.name, "AWS::CloudFormation::Stack", status, reason)


def parse_duration(text: Any) -> float:
    """ISO 8601 duration (``PT1H2M3S``) in seconds; numbers pass through."""
    if text is None or text == "":
        return 0.0
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", str(text))
    if not match:
        return 0.0
    hours, minutes, seconds = (int(x or 0) for x in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


@dataclass
class GroupChange:
    """One Auto Scaling group touched by the update, with what to restore on rollback."""

    logical_id: str
    group_name: str
    template_logical_id: str | None
    policy: dict[str, Any]
    saved: dict[str, Any] = field(default_factory=dict)
    new_version_key: str | None = None
    old_version_key: str | None = None


class StackUpdate:
    """One update of one stack, run in the background."""

    def __init__(self, cloud: "LocalCloud", stack: Any, template_body: str, template: dict[str, Any],
                 params: dict[str, str], changes: dict[str, str]) -> None:
        self.cloud = cloud
        self.stack = stack
        self.template_body = template_body
        self.template = template
        self.params = params
        self.changes = changes
        self.generation = cloud.generation
        self.saved_stack: dict[str, Any] = {}
        self.groups: list[GroupChange] = []
        self.cancelled = False
        # the template before this update (moto edits template_dict while creating resources: use the text)
        self.old_template = (cfn_template.parse(stack.template) if isinstance(stack.template, str)
                             else copy.deepcopy(stack.template_dict))

    def check(self) -> None:
        """Raise :class:`ReplacementFailed` once CancelUpdateStack was called."""
        if self.cancelled:
            raise ReplacementFailed("Stack update cancelled by user request (CancelUpdateStack)")

    # ------------------------------------------------------------------ refusal by stack policy
    def refuse(self, logical_id: str, resource_type: str, reason: str) -> None:
        """Fail the update the way AWS does when the stack policy denies it (lock held)."""
        stack_event(self.cloud, self.stack, "UPDATE_IN_PROGRESS", "User Initiated")
        add_event(self.cloud, self.stack, logical_id, resource_type, "UPDATE_FAILED", reason,
                  self._physical_id(logical_id))
        stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_IN_PROGRESS",
                    f"The following resource(s) failed to update: [{logical_id}]. {reason}")
        stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_COMPLETE", reason)

    # ------------------------------------------------------------------ the rolling update
    def begin(self) -> None:
        """Apply the new parameters and launch template versions, then roll in the background (lock held)."""
        stack_event(self.cloud, self.stack, "UPDATE_IN_PROGRESS", "User Initiated")
        try:
            self._apply_parameters()
            for logical_id in sorted(self.changes):
                if self._type(logical_id) == LAUNCH_TEMPLATE:
                    self._new_template_version(logical_id)
            for logical_id in sorted(self.changes):
                if self._type(logical_id) == GROUP:
                    self.groups.append(self._update_group(logical_id))
        except Exception as exc:  # e.g. a property localcloud cannot resolve: fail like AWS, change nothing
            log.exception("stack %s: update could not start", self.stack.name)
            reason = f"localcloud could not apply the update: {type(exc).__name__}: {exc}"
            if self.saved_stack:
                self._restore_parameters()
            for change in self.groups:
                self._restore_group(change)
            stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_IN_PROGRESS", reason)
            stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_COMPLETE", reason)
            return
        self.cloud.spawn(f"localcloud-update-{self.stack.name}", self.run)

    def run(self) -> None:
        """Replace instances group by group; roll everything back on failure."""
        try:
            for change in self.groups:
                self._roll(change)
        except ReplacementFailed as exc:
            self._rollback(str(exc))
            return
        except Exception as exc:
            if type(exc).__name__ == "OperationStopped":
                raise
            log.exception("stack %s: rolling update crashed", self.stack.name)
            self._rollback(f"localcloud internal error: {type(exc).__name__}: {exc}")
            return
        with self.cloud.op_lock(self.generation):
            for change in self.groups:
                add_event(self.cloud, self.stack, change.logical_id, GROUP, "UPDATE_COMPLETE",
                          physical_id=change.group_name)
            self.stack.template = self.template_body
            self.stack._parse_template()
            stack_event(self.cloud, self.stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
            stack_event(self.cloud, self.stack, "UPDATE_COMPLETE")

    def _roll(self, change: GroupChange) -> None:
        rolling = change.policy.get("AutoScalingRollingUpdate")
        if rolling is None or change.new_version_key is None or change.new_version_key == change.old_version_key:
            return
        with self.cloud.op_lock(self.generation):
            group = self.cloud.fleet.group(change.group_name)
            settings = clean_json(copy.deepcopy(rolling), self.stack.resource_map)
            limits = BatchLimits(max_batch=int(settings.get("MaxBatchSize", 1)),
                                 min_in_service=int(settings.get("MinInstancesInService", 0)),
                                 pause_seconds=parse_duration(settings.get("PauseTime", "PT0S")))
            if limits.min_in_service >= (group.max_size or 0):
                raise ReplacementFailed(f"MinInstancesInService ({limits.min_in_service}) must be less than the "
                                        f"group's MaxSize ({group.max_size})")
            count = sum(1 for r in self.cloud.fleet.group_records(change.group_name)
                        if r.launch_version != change.new_version_key)
            add_event(self.cloud, self.stack, change.logical_id, GROUP, "UPDATE_IN_PROGRESS",
                      f"Rolling update initiated. Terminating {count} obsolete instance(s) in batches of "
                      f"{limits.max_batch}, while keeping at least {limits.min_in_service} instance(s) in service.",
                      change.group_name)
            group._lc_busy = "rolling update"
        target = change.new_version_key

        def report(text: str) -> None:
            with self.cloud.op_lock(self.generation):
                add_event(self.cloud, self.stack, change.logical_id, GROUP, "UPDATE_IN_PROGRESS", text,
                          change.group_name)

        after_batch: Callable[[list[str]], None] | None = None
        if str(settings.get("WaitOnResourceSignals", "false")).lower() == "true":
            # with signals, PauseTime is their timeout (AWS's default then: PT5M)
            timeout = parse_duration(settings["PauseTime"]) if "PauseTime" in settings else 300.0
            limits.pause_seconds = 0.0
            percent = int(settings.get("MinSuccessfulInstancesPercent", 100))

            def wait_for_signals(new_ids: list[str]) -> None:
                self._wait_signals(change, new_ids, timeout, percent, report)

            after_batch = wait_for_signals

        # An abandoned launch: with WaitOnResourceSignals it never signals, so the batch times out and the
        # update fails; without signals CloudFormation does not see it (the group launches another instance)
        # unless LocalCloud(rolling_abandon="fail") says otherwise. See localcloud/README.md.
        fail_on_abandon = self.cloud.rolling_abandon == "fail"
        try:
            replace_instances(self.cloud, change.group_name, lambda r: r.launch_version != target, limits,
                              self.generation, report, check=self.check, after_batch=after_batch,
                              fail_on_abandon=fail_on_abandon)
        finally:
            group._lc_busy = None

    def _wait_signals(self, change: GroupChange, new_ids: list[str], timeout: float, percent: int,
                      report: Callable[[str], None]) -> None:
        """WaitOnResourceSignals: SUCCESS signals (UniqueId = instance id) from the batch's new instances."""
        needed = math.ceil(len(new_ids) * percent / 100)
        report(f"New instance(s) added to autoscaling group - Waiting on {needed} resource signal(s) with a "
               f"timeout of {int(timeout)} seconds.")
        signals = self.cloud.signals.setdefault((self.stack.name, change.logical_id), {})
        deadline = self.cloud.clock.now() + timeout

        def received() -> bool:
            self.check()
            statuses = [signals.get(i) for i in new_ids]
            failures = [i for i, st in zip(new_ids, statuses) if st == "FAILURE"]
            if failures:
                raise ReplacementFailed(f"Received FAILURE signal(s) from {failures}")
            successes = statuses.count("SUCCESS")
            if successes >= needed:
                return True
            if self.cloud.clock.now() >= deadline:
                raise ReplacementFailed(f"Received {successes} SUCCESS signal(s) out of {len(new_ids)}. Unable to "
                                        f"satisfy {percent}% MinSuccessfulInstancesPercent requirement")
            return False

        self.cloud.wait_for(received, self.generation)
        report(f"Received SUCCESS signal with UniqueId(s) {[i for i in new_ids if signals.get(i) == 'SUCCESS']}")

    def _rollback(self, reason: str) -> None:
        log.warning("stack %s: rolling update failed (%s); rolling back", self.stack.name, reason)
        with self.cloud.op_lock(self.generation):
            failed = [c.logical_id for c in self.groups]
            for change in self.groups:
                add_event(self.cloud, self.stack, change.logical_id, GROUP, "UPDATE_FAILED", reason,
                          change.group_name)
            stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_IN_PROGRESS",
                        f"The following resource(s) failed to update: [{', '.join(failed)}]. {reason}")
            self._restore_parameters()
            for change in self.groups:
                self._restore_group(change)
        try:
            for change in self.groups:
                self._roll_back_group(change)
        except Exception as exc:
            if type(exc).__name__ == "OperationStopped":
                raise
            log.warning("stack %s: rollback failed: %s", self.stack.name, exc)
            with self.cloud.op_lock(self.generation):
                stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_FAILED", f"Rollback failed: {exc}")
            return
        with self.cloud.op_lock(self.generation):
            for change in self.groups:
                add_event(self.cloud, self.stack, change.logical_id, GROUP, "UPDATE_COMPLETE",
                          physical_id=change.group_name)
            for logical_id in sorted(self.changes):
                if self._type(logical_id) == LAUNCH_TEMPLATE:
                    add_event(self.cloud, self.stack, logical_id, LAUNCH_TEMPLATE, "UPDATE_COMPLETE",
                              physical_id=self._physical_id(logical_id))
            stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
            stack_event(self.cloud, self.stack, "UPDATE_ROLLBACK_COMPLETE")

    def _roll_back_group(self, change: GroupChange) -> None:
        fleet = self.cloud.fleet
        old_desired = change.saved["desired_capacity"]
        if change.saved.get("rollback_desired") is not None:
            old_desired = max(change.saved["min_size"] or 0,
                              min(change.saved["rollback_desired"], change.saved["max_size"] or 0))
        with self.cloud.op_lock(self.generation):
            add_event(self.cloud, self.stack, change.logical_id, GROUP, "UPDATE_IN_PROGRESS",
                      "Rolling back: restoring the previous launch template version and capacity.",
                      change.group_name)
            group = fleet.group(change.group_name)
            # first give back any extra capacity the update had launched (newest new instances first)
            while (group.desired_capacity or 0) > old_desired:
                extra = [r for r in reversed(fleet.group_records(change.group_name))
                         if r.launch_version != change.old_version_key and r.state not in TERMINATING_STATES]
                if not extra:  # the previous template's size is smaller than the group: scale in to it
                    fleet.scale_in(change.group_name, old_desired)
                    group.desired_capacity = old_desired
                    break
                fleet.terminate(extra[0].instance_id, decrement=True, reason="rollback")
        old = change.old_version_key
        rolling = change.policy.get("AutoScalingRollingUpdate") or {}
        with self.cloud.op_lock(self.generation):
            settings = clean_json(copy.deepcopy(rolling), self.stack.resource_map)
        limits = BatchLimits(max_batch=int(settings.get("MaxBatchSize", 1)),
                             min_in_service=int(settings.get("MinInstancesInService", 0)),
                             pause_seconds=0.0)
        group._lc_busy = "rollback"
        try:
            replace_instances(self.cloud, change.group_name, lambda r: r.launch_version != old, limits,
                              self.generation, lambda text: None)
        finally:
            group._lc_busy = None

        def restored() -> bool:
            recs = fleet.group_records(change.group_name)
            return sum(r.state == "InService" for r in recs) >= old_desired and all(
                r.launch_version == old for r in recs if r.state == "InService")

        self.cloud.wait_for(restored, self.generation)

    # ------------------------------------------------------------------ helpers (lock held)
    def _type(self, logical_id: str) -> str:
        return (self.template.get("Resources", {}).get(logical_id) or {}).get("Type", "")

    def _physical_id(self, logical_id: str) -> str:
        resource = self.stack.resource_map._parsed_resources.get(logical_id)
        return str(getattr(resource, "physical_resource_id", "") or "")

    def _apply_parameters(self) -> None:
        resource_map = self.stack.resource_map
        self.saved_stack = {"parameters": dict(self.stack.parameters),
                            "input": dict(resource_map.input_parameters)}
        resource_map.input_parameters = dict(self.params)
        resource_map._template = self.template
        resource_map.load_parameters()
        self.stack.parameters = dict(self.params)

    def _restore_parameters(self) -> None:
        resource_map = self.stack.resource_map
        resource_map.input_parameters = self.saved_stack["input"]
        resource_map._template = self.stack.template_dict
        resource_map.load_parameters()
        self.stack.parameters = self.saved_stack["parameters"]

    def _new_template_version(self, logical_id: str) -> None:
        lt = self.stack.resource_map._parsed_resources.get(logical_id)
        add_event(self.cloud, self.stack, logical_id, LAUNCH_TEMPLATE, "UPDATE_IN_PROGRESS",
                  physical_id=getattr(lt, "id", ""))
        props = copy.deepcopy(self.template["Resources"][logical_id].get("Properties", {}))
        data = clean_json(props.get("LaunchTemplateData", {}), self.stack.resource_map)
        data["UserData"] = parse_user_data(data.get("UserData"))
        version = lt.create_version(data, "localcloud: stack update")
        add_event(self.cloud, self.stack, logical_id, LAUNCH_TEMPLATE, "UPDATE_COMPLETE",
                  f"New launch template version {version.number}", lt.id)

    def _update_group(self, logical_id: str) -> GroupChange:
        group = self.stack.resource_map._parsed_resources.get(logical_id)
        definition = self.template["Resources"][logical_id]
        spec = definition.get("Properties", {}).get("LaunchTemplate") or {}
        lt_ref = spec.get("LaunchTemplateId") or spec.get("LaunchTemplateName") or {}
        change = GroupChange(logical_id=logical_id, group_name=group.name,
                             template_logical_id=lt_ref.get("Ref") if isinstance(lt_ref, dict) else None,
                             policy=definition.get("UpdatePolicy") or {})
        change.saved = {
            "desired_capacity": group.desired_capacity, "min_size": group.min_size, "max_size": group.max_size,
            "provided_version": getattr(group, "provided_launch_template_version", None),
            "version": getattr(group, "launch_template_version", None), "tags": copy.deepcopy(group.tags),
            "max_instance_lifetime": getattr(group, "max_instance_lifetime", None),
        }
        change.old_version_key, _ = motoaccess.group_launch_version(group)
        props = clean_json(copy.deepcopy(definition.get("Properties", {})), self.stack.resource_map)
        add_event(self.cloud, self.stack, logical_id, GROUP, "UPDATE_IN_PROGRESS", physical_id=group.name)
        if group.ec2_launch_template is not None and "LaunchTemplate" in props:
            version = props["LaunchTemplate"].get("Version")
            group.provided_launch_template_version = None if version is None else str(version)
            group.launch_template_version = "$Default" if version is None else str(version)
        for prop, attr in (("MinSize", "min_size"), ("MaxSize", "max_size")):
            if prop in props:
                setattr(group, attr, int(props[prop]))
        # Tags: CloudFormation changes only the tags the template declares (added, changed, or removed from
        # the template); tags set outside the stack (CreateOrUpdateTags: Phoenix's lock and history, an
        # operator's) are left alone. See localcloud/README.md, "Group tags on a stack update".
        old_props = ((self.old_template.get("Resources") or {}).get(logical_id) or {}).get("Properties") or {}
        old_keys = {str(t.get("Key")) for t in old_props.get("Tags") or [] if isinstance(t, dict)}
        new_tags = {str(t["Key"]): t for t in props.get("Tags") or []}
        touched = old_keys | set(new_tags)
        change.saved["template_tags"] = {t["Key"]: copy.deepcopy(t) for t in group.tags if t.get("Key") in touched}
        change.saved["template_tag_keys"] = touched
        kept = [t for t in group.tags if t.get("Key") not in touched]
        group.tags = kept + [{**t, "ResourceId": group.name, "ResourceType": "auto-scaling-group",
                              "PropagateAtLaunch": str(t.get("PropagateAtLaunch", "false")).lower() == "true"}
                             for t in new_tags.values()]
        if "MaxInstanceLifetime" in props:
            group.max_instance_lifetime = int(props["MaxInstanceLifetime"]) or None
        change.new_version_key, _ = motoaccess.group_launch_version(group)
        # what a rollback puts back: the previous template's DesiredCapacity (with the previous parameters),
        # as CloudFormation rolls back to the previous template; without one, the group's size before
        old_desired = old_props.get("DesiredCapacity")
        if isinstance(old_desired, dict) and "Ref" in old_desired:
            old_desired = (self.saved_stack.get("parameters") or {}).get(old_desired["Ref"])
        try:
            change.saved["rollback_desired"] = None if old_desired is None else int(old_desired)
        except (TypeError, ValueError):
            change.saved["rollback_desired"] = None
        if "DesiredCapacity" in props and int(props["DesiredCapacity"]) != group.desired_capacity:
            self.cloud.fleet.scale_in(group.name, int(props["DesiredCapacity"]))
            group.set_desired_capacity(int(props["DesiredCapacity"]))
            change.saved["desired_after"] = group.desired_capacity
        return change

    def _restore_group(self, change: GroupChange) -> None:
        group = self.cloud.fleet.group(change.group_name)
        saved = change.saved
        if group.ec2_launch_template is not None and change.old_version_key:
            old_number = change.old_version_key.rsplit(":", 1)[1]
            group.provided_launch_template_version = old_number
            group.launch_template_version = old_number
        group.min_size, group.max_size = saved["min_size"], saved["max_size"]
        touched = saved.get("template_tag_keys")
        if touched is None:
            group.tags = saved["tags"]
        else:  # put back the template's tags only; tags written meanwhile by others stay
            group.tags = [t for t in group.tags if t.get("Key") not in touched] + list(
                saved["template_tags"].values())
        group.max_instance_lifetime = saved["max_instance_lifetime"]
