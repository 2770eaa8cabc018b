"""The Auto Scaling lifecycle simulator: Pending -> (Pending:Wait) -> InService, and
(Terminating:Wait) -> Terminated, with hooks, tokens, heartbeats, timeouts and notifications.

Everything here runs with the cloud lock held (see :class:`localcloud.cloud.LocalCloud`). moto keeps
the groups and instances; this module keeps one :class:`InstanceRecord` per instance and writes the
simulated state into moto's own instance objects, so moto's Describe* responses report it.
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

from localcloud import motoaccess, notifications
from localcloud.addresses import AddressPool
from localcloud.agents import AgentRunner
from localcloud.awsquery import validation_error
from localcloud.clock import Clock
from localcloud.identity import IdentitySigner
from localcloud.records import ACTIVE_STATES, TERMINATING_STATES, InstanceRecord, Timeline

log = logging.getLogger(__name__)

GLOBAL_TIMEOUT_CAP = 172800  # seconds: AWS's 48 h limit on one lifecycle action


class Fleet:
    """Lifecycle state of every instance in every Auto Scaling group of one region."""

    def __init__(self, clock: Clock, region: str, boot_seconds: float, agents: AgentRunner,
                 timeline: Timeline, addresses: AddressPool | None = None,
                 identity: IdentitySigner | None = None) -> None:
        self.clock = clock
        self.region = region
        self.boot_seconds = boot_seconds
        self.agents = agents
        self.timeline = timeline
        self.addresses = addresses
        self.identity = identity
        self.records: dict[str, InstanceRecord] = {}
        self.seq = 0
        self.balancer: Any = None  # localcloud.loadbalancing.Balancer, set by LocalCloud
        self.duplicate_notifications = 0.0  # set by LocalCloud
        self.random = random.Random()

    # ------------------------------------------------------------------ moto access
    @property
    def backend(self) -> Any:
        """moto's Auto Scaling backend for this region."""
        return motoaccess.autoscaling(self.region)

    def group(self, name: str | None) -> Any:
        """The moto group called ``name``, or a ValidationError like AWS's."""
        group = self.backend.autoscaling_groups.get(name or "")
        if group is None:
            raise validation_error(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
        return group

    def hooks(self, group_name: str, transition: str) -> list[Any]:
        """The group's lifecycle hooks for ``transition`` (moto objects with localcloud extras)."""
        return [h for h in self.backend.lifecycle_hooks.values()
                if h.auto_scaling_group_name == group_name and h.lifecycle_transition == transition]

    def _moto_state(self, rec: InstanceRecord) -> Any | None:
        group = self.backend.autoscaling_groups.get(rec.group)
        if group is None:
            return None
        return next((s for s in group.instance_states if s.instance.id == rec.instance_id), None)

    # ------------------------------------------------------------------ bookkeeping
    def next_seq(self) -> int:
        """A monotonically increasing sequence number (orders launches and hook creation)."""
        self.seq += 1
        return self.seq

    def group_records(self, group_name: str, alive_only: bool = True) -> list[InstanceRecord]:
        """Records of the group's instances, oldest launch first."""
        recs = [r for r in self.records.values() if r.group == group_name and (r.alive or not alive_only)]
        return sorted(recs, key=lambda r: r.seq)

    def in_service(self, group_name: str) -> list[InstanceRecord]:
        """The group's InService instances."""
        return [r for r in self.group_records(group_name) if r.state == "InService"]

    def note(self, group_name: str, event: str) -> None:
        """Add a timeline entry for the group if its counts changed."""
        group = self.backend.autoscaling_groups.get(group_name)
        recs = self.group_records(group_name)
        self.timeline.note(group_name, self.clock.now(),
                           in_service=sum(r.state == "InService" for r in recs),
                           total=sum(r.state in ACTIVE_STATES for r in recs),
                           desired=group.desired_capacity if group is not None else 0, event=event)

    def set_state(self, rec: InstanceRecord, state: str, event: str) -> None:
        """Move an instance to ``state`` in our table and in moto's object."""
        rec.state = state
        moto_state = self._moto_state(rec)
        if moto_state is not None:
            moto_state.lifecycle_state = state
        if state == "InService" and rec.in_service_at is None:
            rec.in_service_at = self.clock.now()
        self.note(rec.group, f"{rec.instance_id} {event}")

    # ------------------------------------------------------------------ reconcile with moto
    def reconcile(self) -> None:
        """Register instances moto launched, forget those it removed, notice new hooks."""
        groups = self.backend.autoscaling_groups
        for key, hook in list(self.backend.lifecycle_hooks.items()):
            if hook.auto_scaling_group_name not in groups:  # AWS deletes hooks with their group
                del self.backend.lifecycle_hooks[key]
                continue
            self._notice_hook(hook)
        present: set[str] = set()
        for group in list(self.backend.autoscaling_groups.values()):
            motoaccess.track_group(group)
            for state in list(group.instance_states):
                present.add(state.instance.id)
                if state.instance.id not in self.records:
                    self._register(group, state)
            self.note(group.name, "reconcile")
        for rec in list(self.records.values()):
            if rec.alive and rec.instance_id not in present:
                self._gone(rec, rec.end_reason or "removed")

    def _notice_hook(self, hook: Any) -> None:
        if not hasattr(hook, "_lc_seq"):
            hook._lc_seq = self.next_seq()
        target = getattr(hook, "notification_target_arn", None)
        if getattr(hook, "_lc_real_target", False) and getattr(hook, "_lc_notified_target", None) != target:
            hook._lc_notified_target = target
            group = self.backend.autoscaling_groups.get(hook.auto_scaling_group_name)
            if group is not None:
                notifications.deliver(target, notifications.test_message(group, self.clock.iso()))

    def _register(self, group: Any, state: Any) -> None:
        version_key, lt_spec = motoaccess.group_launch_version(group)
        now = self.clock.now()
        rec = InstanceRecord(instance_id=state.instance.id, group=group.name, seq=self.next_seq(),
                             launched_at=now, launch_version=version_key, state="Pending",
                             boot_due=now + self.boot_seconds)
        self.records[rec.instance_id] = rec
        motoaccess.track_instance_state(state, lt_spec, getattr(group, "launch_configuration_name", None))
        state.instance.launch_time = self.clock.datetime()
        state.lifecycle_state = "Pending"
        self._give_address(rec, state.instance)
        self._attach_profile(group, state.instance.id)
        self.agents.started(rec.instance_id)
        self.note(group.name, f"{rec.instance_id} launched")

    def _give_address(self, rec: InstanceRecord, instance: Any) -> None:
        """The instance's own loopback address as its private IP (in moto's objects too, so
        DescribeInstances reports it), and its signed identity document naming that address."""
        if self.addresses is None:
            return
        rec.private_ip = self.addresses.allocate()
        motoaccess.set_private_ip(instance, rec.private_ip)
        if self.identity is not None:
            self.identity.issue(
                instance_id=rec.instance_id, account_id=motoaccess.ACCOUNT_ID,
                availability_zone=instance.placement.zone or f"{self.region}a",
                image_id=instance.image_id, instance_type=instance.instance_type,
                pending_time=self.clock.iso(rec.launched_at)[:-5] + "Z", private_ip=rec.private_ip)

    def _attach_profile(self, group: Any, instance_id: str) -> None:
        """Associate the launch template's instance profile, as EC2 would at launch."""
        profile: dict[str, str] = {}
        if group.ec2_launch_template is not None:
            data = group.ec2_launch_template.get_version(group.launch_template_version).data or {}
            profile = data.get("IamInstanceProfile") or {}
        elif group.launch_config is not None and getattr(group.launch_config, "iam_instance_profile", None):
            name = group.launch_config.iam_instance_profile
            profile = {"Arn": name} if str(name).startswith("arn:") else {"Name": name}
        if not profile:
            return
        try:
            motoaccess.ec2(self.region).associate_iam_instance_profile(
                instance_id=instance_id, iam_instance_profile_name=profile.get("Name"),
                iam_instance_profile_arn=profile.get("Arn"))
        except Exception as exc:  # profile missing in IAM: EC2 would refuse the launch; we log it
            log.warning("instance profile %s not attached to %s: %s", profile, instance_id, exc)

    def _gone(self, rec: InstanceRecord, reason: str) -> None:
        rec.state = "Terminated"
        rec.ended_at = self.clock.now()
        rec.end_reason = rec.end_reason or reason
        rec.tokens.clear()
        rec.deadlines.clear()
        self.agents.stopped(rec.instance_id)
        self.note(rec.group, f"{rec.instance_id} terminated")

    # ------------------------------------------------------------------ timers
    def tick(self) -> None:
        """Advance boots and lifecycle-action timeouts that are due on the virtual clock."""
        now = self.clock.now()
        for rec in sorted(self.records.values(), key=lambda r: r.seq):
            if not rec.alive:
                continue
            if rec.state == "Pending" and rec.boot_due is not None and rec.boot_due <= now:
                rec.boot_due = None
                self._booted(rec)
            elif rec.state in ("Pending:Wait", "Terminating:Wait"):
                for hook_name, deadline in sorted(rec.deadlines.items()):
                    if deadline <= now and hook_name in rec.tokens:
                        hook = self._hook(rec.group, hook_name)
                        result = hook.default_result if hook is not None else "ABANDON"
                        log.info("lifecycle action of %s timed out on hook %s: %s",
                                 rec.instance_id, hook_name, result)
                        self._resolve(rec, hook_name, result, cause="heartbeat timeout")
                        break

    def _hook(self, group_name: str, hook_name: str) -> Any | None:
        return self.backend.lifecycle_hooks.get(f"{group_name}_{hook_name}")

    def _booted(self, rec: InstanceRecord) -> None:
        hooks = [h for h in self.hooks(rec.group, notifications.LAUNCHING) if h._lc_seq < rec.seq]
        if not hooks:
            self.set_state(rec, "InService", "in service")
            return
        rec.transition = "launching"
        self._open_actions(rec, hooks)
        self.set_state(rec, "Pending:Wait", "pending:wait")

    def _open_actions(self, rec: InstanceRecord, hooks: list[Any]) -> None:
        """Open one lifecycle action per hook: token, heartbeat deadline, global cap, notification."""
        now = self.clock.now()
        rec.tokens.clear()
        rec.deadlines.clear()
        for hook in hooks:
            token = str(uuid.uuid4())
            timeout = int(hook.heartbeat_timeout)
            rec.tokens[hook.name] = token
            rec.deadlines[f"{hook.name}#global"] = now + min(100 * timeout, GLOBAL_TIMEOUT_CAP)
            rec.deadlines[hook.name] = min(now + timeout, rec.deadlines[f"{hook.name}#global"])
            if getattr(hook, "_lc_real_target", False):
                message = notifications.lifecycle_message(hook, rec.group, rec.instance_id, token,
                                                          self.clock.iso())
                notifications.deliver(hook.notification_target_arn, message)
                if self.duplicate_notifications and self.random.random() < self.duplicate_notifications:
                    # Auto Scaling and SQS deliver at least once: the same message may arrive twice
                    notifications.deliver(hook.notification_target_arn, message)

    # ------------------------------------------------------------------ API: lifecycle actions
    def find_action(self, group_name: str | None, hook_name: str | None, token: str | None,
                    instance_id: str | None) -> InstanceRecord:
        """The instance with an open lifecycle action matching the request, or ValidationError."""
        self.group(group_name)
        if not hook_name or self._hook(group_name or "", hook_name) is None:
            raise validation_error(f"No Lifecycle Hook found with name '{hook_name}' for group '{group_name}'")
        for rec in self.group_records(group_name or ""):
            if hook_name not in rec.tokens:
                continue
            if token and rec.tokens[hook_name] == token:
                return rec
            if not token and instance_id and rec.instance_id == instance_id:
                return rec
        if token:
            raise validation_error(f"No active Lifecycle Action found with token {token}")
        raise validation_error(f"No active Lifecycle Action found with instance ID {instance_id}")

    def complete(self, group_name: str | None, hook_name: str | None, result: str | None,
                 token: str | None = None, instance_id: str | None = None) -> InstanceRecord:
        """CompleteLifecycleAction: CONTINUE or ABANDON an open action."""
        if result not in ("CONTINUE", "ABANDON"):
            raise validation_error(f"LifecycleActionResult must be CONTINUE or ABANDON, got {result!r}")
        if not token and not instance_id:
            raise validation_error("Either LifecycleActionToken or InstanceId must be given")
        rec = self.find_action(group_name, hook_name, token, instance_id)
        self._resolve(rec, hook_name or "", result, cause="CompleteLifecycleAction")
        return rec

    def close_actions(self, group_name: str, hook_name: str) -> None:
        """A hook is being deleted: its open actions complete first, as in AWS (ABANDON for launching
        instances, CONTINUE for terminating ones)."""
        for rec in self.group_records(group_name):
            if hook_name in rec.tokens:
                result = "ABANDON" if rec.transition == "launching" else "CONTINUE"
                self._resolve(rec, hook_name, result, cause="lifecycle hook deleted")

    def heartbeat(self, group_name: str | None, hook_name: str | None, token: str | None = None,
                  instance_id: str | None = None) -> InstanceRecord:
        """RecordLifecycleActionHeartbeat: restart the heartbeat timeout (within the global cap)."""
        if not token and not instance_id:
            raise validation_error("Either LifecycleActionToken or InstanceId must be given")
        rec = self.find_action(group_name, hook_name, token, instance_id)
        hook = self._hook(rec.group, hook_name or "")
        cap = rec.deadlines.get(f"{hook_name}#global", float("inf"))
        rec.deadlines[hook_name or ""] = min(self.clock.now() + int(hook.heartbeat_timeout), cap)
        return rec

    def _resolve(self, rec: InstanceRecord, hook_name: str, result: str, cause: str) -> None:
        rec.tokens.pop(hook_name, None)
        rec.deadlines.pop(hook_name, None)
        rec.deadlines.pop(f"{hook_name}#global", None)
        if rec.transition == "launching":
            if result == "ABANDON":
                rec.tokens.clear()
                rec.deadlines.clear()
                rec.end_reason = "abandoned"
                log.info("launch of %s abandoned (%s); the group launches a replacement", rec.instance_id, cause)
                self.set_state(rec, "Terminating", "abandoned")
                self._finish_termination(rec, replace=True)
            elif not rec.tokens:
                rec.transition = None
                self.set_state(rec, "InService", "in service")
        elif rec.transition == "terminating":
            if result == "ABANDON" or not rec.tokens:
                rec.tokens.clear()
                rec.deadlines.clear()
                self.set_state(rec, "Terminating:Proceed", "terminating:proceed")
                self._finish_termination(rec, replace=False)

    # ------------------------------------------------------------------ terminate / launch
    def scale_in(self, group_name: str, new_desired: int) -> list[str]:
        """Terminate instances beyond ``new_desired`` through the lifecycle (Terminating:Wait with a
        TERMINATING hook), choosing like the default termination policy: instances launched from an
        outdated launch version first, then the oldest; instances protected from scale-in never."""
        group = self.group(group_name)
        current, _ = motoaccess.group_launch_version(group)
        protected = {s.instance.id for s in group.instance_states if s.protected_from_scale_in}
        active = [r for r in self.group_records(group_name) if r.state in ACTIVE_STATES]
        excess = len(active) - new_desired
        if excess <= 0:
            return []
        candidates = sorted((r for r in active if r.instance_id not in protected),
                            key=lambda r: (r.launch_version == current, r.seq))
        victims = candidates[:excess]
        for victim in victims:
            self.terminate(victim.instance_id, decrement=True, reason="scale-in", check_min=False)
        return [v.instance_id for v in victims]

    def terminate(self, instance_id: str, decrement: bool, reason: str, check_min: bool = True) -> InstanceRecord:
        """Take an instance out of its group: Terminating(:Wait) -> Terminated.

        Without ``decrement`` the group launches a replacement at once (as AWS does).
        """
        rec = self.records.get(instance_id)
        if rec is None or not rec.alive:
            raise validation_error(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
        if rec.state in TERMINATING_STATES:
            return rec
        group = self.group(rec.group)
        if decrement:
            if check_min and (group.desired_capacity or 0) - 1 < (group.min_size or 0):
                raise validation_error(
                    f"Currently, desiredSize equals minSize ({group.min_size}). Terminating instance without "
                    "replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity "
                    "flag to false or lower group's min size.")
            group.desired_capacity = max(0, (group.desired_capacity or 0) - 1)
        rec.end_reason = reason
        rec.tokens.clear()
        rec.deadlines.clear()
        rec.boot_due = None
        if self.balancer is not None and self.balancer.hold_termination(rec):
            # deregistered from the load balancer first; hooks and termination once it has drained
            rec.transition = "draining"
            self.set_state(rec, "Terminating", "draining")
        else:
            self._terminate_after_deregistration(rec)
        if not decrement:
            self._top_up(group)
        return rec

    def after_draining(self, rec: InstanceRecord) -> None:
        """Every target group has deregistered ``rec``: go on terminating it (TERMINATING hooks first)."""
        self._terminate_after_deregistration(rec)

    def _terminate_after_deregistration(self, rec: InstanceRecord) -> None:
        hooks = self.hooks(rec.group, notifications.TERMINATING)
        if hooks:
            rec.transition = "terminating"
            self._open_actions(rec, hooks)
            self.set_state(rec, "Terminating:Wait", "terminating:wait")
        else:
            rec.transition = None
            self.set_state(rec, "Terminating", "terminating")
            self._finish_termination(rec, replace=False)

    def _finish_termination(self, rec: InstanceRecord, replace: bool) -> None:
        group = self.backend.autoscaling_groups.get(rec.group)
        if group is not None:
            group.instance_states = [s for s in group.instance_states if s.instance.id != rec.instance_id]
        try:
            motoaccess.ec2(self.region).terminate_instances([rec.instance_id])
        except Exception as exc:  # already gone in EC2
            log.debug("terminate %s in EC2: %s", rec.instance_id, exc)
        self._gone(rec, rec.end_reason or "terminated")
        if replace and group is not None:
            self._top_up(group)

    def _top_up(self, group: Any) -> None:
        """Let moto launch what the group lacks, and register the new instances."""
        group.set_desired_capacity(group.desired_capacity)
        self.reconcile()

    def launch(self, group_name: str, count: int) -> list[str]:
        """Raise desired capacity by ``count`` and return the ids of the instances launched."""
        group = self.group(group_name)
        before = set(self.records)
        group.desired_capacity = (group.desired_capacity or 0) + count
        self._top_up(group)
        return [iid for iid in self.records if iid not in before]

    def describe(self, group_name: str | None = None) -> list[dict[str, Any]]:
        """JSON view of records (all groups or one)."""
        return [r.as_dict() for r in sorted(self.records.values(), key=lambda r: r.seq)
                if group_name is None or r.group == group_name]
