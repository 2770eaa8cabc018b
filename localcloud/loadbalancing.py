"""Target groups that follow their Auto Scaling groups, as Elastic Load Balancing does.

moto keeps target groups and answers the ELBv2 API, but it registers every instance of a group the
moment the group launches it (``Pending`` included), deregisters at once, and reports a target
``healthy`` as soon as it is registered. AWS does this instead, and so does localcloud:

- **Registration** happens when the instance leaves the launch lifecycle: "if the Auto Scaling group
  is associated with an Elastic Load Balancing load balancer, the instance is registered with the load
  balancer before the instance reaches the InService state" (Amazon EC2 Auto Scaling User Guide, "How
  lifecycle hooks work in Amazon EC2 Auto Scaling groups", step 3:
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks-overview.html). An instance in
  ``Pending``/``Pending:Wait`` is never a target.
- A new target is ``initial`` (reason ``Elb.RegistrationInProgress``) until it has passed
  ``HealthyThresholdCount`` health checks ``HealthCheckIntervalSeconds`` apart, then ``healthy``
  (Application Load Balancers User Guide, "Health checks for Application Load Balancer target groups",
  https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html).
  localcloud counts that time on its virtual clock; it sends no health-check requests.
- **Deregistration** comes first when the group terminates an instance: "the terminating instance is
  first deregistered from the load balancer. If connection draining is enabled for the load balancer,
  the instance stops accepting new connections and waits for existing connections to drain before
  completing the deregistration process" (same page, step 4), and only then the TERMINATING hook
  (step 5) and the termination. The target is ``draining`` (reason ``Target.DeregistrationInProgress``)
  for the target group's ``deregistration_delay.timeout_seconds`` (default 300, 0..3600), then gone
  (``unused``, ``Target.NotRegistered``) ("Deregistration delay", Application Load Balancers User
  Guide, https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-target-groups.html#deregistration-delay).
  The instance stays in ``Terminating`` (its agent running) until every target group has let it go.
  ``DeregisterTargets`` from a client drains the same way; detaching a target group from the group
  drains the instances the group had registered in it.
- AWS completes a deregistration early when the target has no in-flight requests; localcloud cannot
  see connections and always waits the full delay (the conservative side for a client that must not
  lose requests).

Everything here runs with the cloud lock held.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from moto.autoscaling.models import AutoScalingBackend
from moto.elbv2.exceptions import InvalidTargetError
from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

from localcloud import motoaccess
from localcloud.clock import Clock
from localcloud.records import InstanceRecord

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud
    from localcloud.frontend import Forward, Interceptor, Response
    from localcloud.awsquery import ApiRequest

log = logging.getLogger(__name__)

REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
    "healthy": (None, None),
}

# ELBv2 calls that must see tracked target groups (every call that reads or changes targets)
TRACKED_ACTIONS = ("RegisterTargets", "DeregisterTargets", "DescribeTargetHealth", "DescribeTargetGroups",
                   "ModifyTargetGroupAttributes", "DescribeTargetGroupAttributes")


class TrackedTargetGroup(FakeTargetGroup):
    """A moto target group whose targets go ``initial`` -> ``healthy`` and ``draining`` -> gone on the
    virtual clock. ``_lc_targets`` maps a target id to ``{"state", "until", "asg"}``: ``until`` is when
    the state ends, ``asg`` whether the Auto Scaling group (not a client) registered it."""

    _lc_clock: Clock
    _lc_targets: dict[str, dict[str, Any]]
    _lc_asg_registered: set[str]  # instances the Auto Scaling group has registered (once each)

    # ------------------------------------------------------------------ timing from the group's settings
    def seconds_to_healthy(self) -> float:
        """Virtual seconds a new target spends ``initial``: HealthyThresholdCount x interval."""
        if not self.health_check_enabled:
            return 0.0
        return float(int(self.healthy_threshold_count) * int(self.health_check_interval_seconds))

    def deregistration_delay(self) -> float:
        """The target group's ``deregistration_delay.timeout_seconds``."""
        return float(int(self.attributes.get("deregistration_delay.timeout_seconds", 300)))

    # ------------------------------------------------------------------ moto's contract
    def register(self, targets: list[dict[str, Any]], asg: bool = False) -> None:  # noqa: D102
        super().register(targets)
        now = self._lc_clock.now()
        for target in targets:
            entry = self._lc_targets.get(target["Id"])
            if entry is not None and entry["state"] != "draining":
                entry["asg"] = entry["asg"] or asg
                continue
            wait = self.seconds_to_healthy()
            self._lc_targets[target["Id"]] = {"state": "initial" if wait else "healthy",
                                              "until": now + wait if wait else None, "asg": asg}

    def deregister(self, targets: list[dict[str, Any]]) -> None:  # noqa: D102
        for target in targets:
            if target["Id"] not in self.targets:
                raise InvalidTargetError()
        for target in targets:
            self.start_draining(target["Id"])

    def deregister_terminated_instances(self, instance_ids: list[str]) -> None:  # noqa: D102
        for target_id in instance_ids:
            if target_id in self.targets:
                self.start_draining(target_id)

    def health_for(self, target: dict[str, Any], ec2_backend: Any) -> FakeHealthStatus:  # noqa: D102
        registered = self.targets.get(target["Id"])
        entry = self._lc_targets.get(target["Id"]) if registered is not None else None
        if entry is None:
            return super().health_for(target, ec2_backend)
        reason, description = REASONS[entry["state"]]
        return FakeHealthStatus(target["Id"], registered["Port"], self.health_check_port, entry["state"],
                                reason, description)

    # ------------------------------------------------------------------ localcloud's side
    def start_draining(self, target_id: str) -> bool:
        """Begin deregistering ``target_id``; True when it drains (delay > 0), False when it went at once."""
        entry = self._lc_targets.setdefault(target_id, {"state": "healthy", "until": None, "asg": False})
        if entry["state"] == "draining":
            return True
        delay = self.deregistration_delay()
        if delay <= 0:
            self._remove(target_id)
            return False
        entry.update(state="draining", until=self._lc_clock.now() + delay)
        log.info("target %s of %s draining for %.0fs", target_id, self.name, delay)
        return True

    def state_of(self, target_id: str) -> str | None:
        """``initial``/``healthy``/``draining``, or None when not a target."""
        if target_id not in self.targets:
            return None
        return self._lc_targets.get(target_id, {"state": "healthy"})["state"]

    def registered_by_asg(self, target_id: str) -> bool:
        """Whether the Auto Scaling group registered ``target_id`` (and it has not gone yet)."""
        return target_id in self.targets and bool(self._lc_targets.get(target_id, {}).get("asg"))

    def advance(self, now: float) -> None:
        """Move targets whose state has run out: ``initial`` -> ``healthy``, ``draining`` -> gone."""
        for target_id, entry in list(self._lc_targets.items()):
            if target_id not in self.targets:
                del self._lc_targets[target_id]
                continue
            if entry["until"] is None or entry["until"] > now:
                continue
            if entry["state"] == "initial":
                entry.update(state="healthy", until=None)
            elif entry["state"] == "draining":
                self._remove(target_id)
                log.info("target %s of %s deregistered", target_id, self.name)

    def _remove(self, target_id: str) -> None:
        self._lc_targets.pop(target_id, None)
        registered = self.targets.pop(target_id, None)
        if registered is not None:
            self.deregistered_targets[target_id] = registered


def _moto_registers_nothing(self: AutoScalingBackend, group_name: str) -> None:
    """Replaces moto's ``update_attached_target_groups`` while a LocalCloud runs: moto would register
    ``Pending`` instances; :class:`Balancer` registers each instance when it is ``InService``."""


class Balancer:
    """Keeps every target group in step with the Auto Scaling groups that list it in
    ``TargetGroupARNs``, and holds terminating instances until their targets have drained."""

    def __init__(self, cloud: "LocalCloud") -> None:
        self.cloud = cloud
        self._saved: Callable[..., Any] | None = None

    # ------------------------------------------------------------------ process-wide moto patch
    def install(self) -> None:
        """Stop moto from registering instances itself (undone by :meth:`uninstall`)."""
        if self._saved is None:
            self._saved = AutoScalingBackend.update_attached_target_groups
            AutoScalingBackend.update_attached_target_groups = _moto_registers_nothing  # type: ignore[method-assign]

    def uninstall(self) -> None:
        """Give moto back its own ``update_attached_target_groups``."""
        if self._saved is not None:
            AutoScalingBackend.update_attached_target_groups = self._saved  # type: ignore[method-assign]
            self._saved = None

    def interceptors(self) -> dict[str, "Interceptor"]:
        """ELBv2 calls see tracked target groups (a group CloudFormation just created included)."""

        def tracked(req: "ApiRequest", forward: "Forward") -> "Response":
            self.track()
            return forward()

        return {f"elasticloadbalancing:{action}": tracked for action in TRACKED_ACTIONS}

    # ------------------------------------------------------------------ moto access
    def target_groups(self) -> list[TrackedTargetGroup]:
        """Every target group of the region, tracked."""
        self.track()
        return list(motoaccess.elbv2(self.cloud.region).target_groups.values())

    def track(self) -> None:
        """Switch new moto target groups to :class:`TrackedTargetGroup`, adopting their targets as healthy."""
        for group in motoaccess.elbv2(self.cloud.region).target_groups.values():
            if type(group) is FakeTargetGroup:
                group.__class__ = TrackedTargetGroup
                group._lc_clock = self.cloud.clock
                group._lc_targets = {tid: {"state": "healthy", "until": None, "asg": False}
                                     for tid in group.targets}
                group._lc_asg_registered = set()

    # ------------------------------------------------------------------ the lifecycle's questions
    def hold_termination(self, rec: InstanceRecord) -> bool:
        """The group starts terminating ``rec``: drain it from every target group the group registered
        it in. True when at least one drains (the instance waits in ``Terminating``)."""
        draining = False
        for group in self.target_groups():
            if group.registered_by_asg(rec.instance_id):
                draining = group.start_draining(rec.instance_id) or draining
        return draining

    def still_draining(self, instance_id: str) -> bool:
        """Whether any target group still drains ``instance_id``."""
        return any(g.state_of(instance_id) == "draining" for g in self.target_groups())

    # ------------------------------------------------------------------ timers
    def tick(self) -> None:
        """Advance target states, register InService instances, drain the ones that left, and let
        instances whose deregistration finished go on terminating."""
        groups = self.target_groups()
        if not groups:
            return
        now = self.cloud.clock.now()
        for group in groups:
            group.advance(now)
        fleet = self.cloud.fleet
        wanted: dict[str, set[str]] = {}
        for asg in fleet.backend.autoscaling_groups.values():
            in_service = {r.instance_id for r in fleet.in_service(asg.name)}
            for arn in asg.target_group_arns or []:
                wanted.setdefault(arn, set()).update(in_service)
        for group in groups:
            want = wanted.get(group.arn, set())
            for instance_id in sorted(want - group._lc_asg_registered):
                # once per instance: a client's DeregisterTargets is not undone, as in AWS
                group._lc_asg_registered.add(instance_id)
                try:
                    group.register([{"Id": instance_id, "Port": group.port}], asg=True)
                except Exception as exc:  # an instance EC2 no longer runs cannot be registered
                    log.warning("could not register %s in %s: %s", instance_id, group.name, exc)
            for instance_id in list(group.targets):
                if instance_id not in want and group.registered_by_asg(instance_id):
                    group.start_draining(instance_id)
                    group._lc_asg_registered.discard(instance_id)  # a later attach registers it again
        for rec in list(fleet.records.values()):
            if rec.alive and rec.transition == "draining" and not self.still_draining(rec.instance_id):
                fleet.after_draining(rec)
