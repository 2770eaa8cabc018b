"""Instance refresh (StartInstanceRefresh / DescribeInstanceRefreshes / CancelInstanceRefresh) and
MaxInstanceLifetime (instances older than the group's limit are replaced, on the virtual clock)."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localcloud.awsquery import ApiRequest, AwsError, response_xml, validation_error
from localcloud.frontend import Forward, Interceptor, Response, xml_response
from localcloud.records import TERMINATING_STATES
from localcloud.replacement import BatchLimits, ReplacementFailed, replace_instances

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

log = logging.getLogger(__name__)

SERVICE = "autoscaling"
ACTIVE = ("Pending", "InProgress", "Cancelling")

# RefreshPreferences (Auto Scaling API Reference, API_RefreshPreferences): ScaleInProtectedInstances is
# Refresh | Ignore | Wait, StandbyInstances is Terminate | Ignore | Wait; "Wait (default): Amazon EC2 Auto
# Scaling waits one hour for you to remove scale-in protection [return the instances to service]. Otherwise,
# the instance refresh will fail." The user guide's "Understand the default values for an instance refresh"
# confirms Wait for the CLI/SDK (Ignore is the console's default only). "If you specify a value for
# CheckpointPercentages and not for CheckpointDelay, the CheckpointDelay defaults to 3600 (1 hour)."
PROTECTED_CHOICES = ("Refresh", "Ignore", "Wait")
STANDBY_CHOICES = ("Terminate", "Ignore", "Wait")
WAIT_SECONDS = 3600.0
DEFAULT_CHECKPOINT_DELAY = 3600


class RefreshCancelled(Exception):
    """Raised inside a refresh when CancelInstanceRefresh was called."""


@dataclass
class Refresh:
    """One instance refresh."""

    refresh_id: str
    group: str
    preferences: dict[str, Any]
    start_time: float
    status: str = "Pending"
    status_reason: str | None = None
    end_time: float | None = None
    percentage: int = 0
    to_update: int = 0
    cancel: bool = field(default=False, repr=False)

    def describe(self, iso: Any) -> dict[str, Any]:
        """The DescribeInstanceRefreshes entry."""
        entry: dict[str, Any] = {
            "InstanceRefreshId": self.refresh_id, "AutoScalingGroupName": self.group, "Status": self.status,
            "StartTime": iso(self.start_time), "PercentageComplete": self.percentage,
            "InstancesToUpdate": self.to_update, "Preferences": self.preferences,
        }
        if self.status_reason:
            entry["StatusReason"] = self.status_reason
        if self.end_time is not None:
            entry["EndTime"] = iso(self.end_time)
        return entry


class Refresher:
    """Instance refreshes and lifetime-based replacement for every group of the cloud."""

    def __init__(self, cloud: "LocalCloud") -> None:
        self.cloud = cloud
        self.refreshes: list[Refresh] = []
        self.lifetime_jobs: set[str] = set()

    def clear(self) -> None:
        """Forget all refreshes (cloud reset)."""
        for refresh in self.refreshes:
            refresh.cancel = True
        self.refreshes = []
        self.lifetime_jobs = set()

    def active(self, group: str) -> Refresh | None:
        """The group's refresh that has not finished."""
        return next((r for r in self.refreshes if r.group == group and r.status in ACTIVE), None)

    # ------------------------------------------------------------------ API
    def interceptors(self) -> dict[str, Interceptor]:
        """The instance refresh API handlers."""
        return {
            f"{SERVICE}:StartInstanceRefresh": self._start,
            f"{SERVICE}:DescribeInstanceRefreshes": self._describe,
            f"{SERVICE}:CancelInstanceRefresh": self._cancel,
        }

    def _start(self, req: ApiRequest, forward: Forward) -> Response:
        name = req.get("AutoScalingGroupName")
        group = self.cloud.fleet.group(name)
        if self.active(group.name) is not None:
            raise AwsError("InstanceRefreshInProgress",
                           f"An Instance Refresh is already in progress and blocks the execution of this Instance "
                           f"Refresh for {group.name}.")
        if req.get("Strategy", "Rolling") != "Rolling":
            raise validation_error("Strategy must be Rolling")
        desired_config = req.struct("DesiredConfiguration")
        if set(desired_config) - {"LaunchTemplate"}:
            raise validation_error("localcloud simulates only DesiredConfiguration.LaunchTemplate in "
                                   "StartInstanceRefresh")
        raw = req.struct("Preferences")
        prefs: dict[str, Any] = {
            "MinHealthyPercentage": int(raw.get("MinHealthyPercentage", 90)),
            "MaxHealthyPercentage": int(raw.get("MaxHealthyPercentage", 100)),
            "InstanceWarmup": int(raw.get("InstanceWarmup", group.health_check_grace_period or 0)),
            "SkipMatching": str(raw.get("SkipMatching", "false")).lower() == "true",
        }
        if not 0 <= prefs["MinHealthyPercentage"] <= 100 or not 100 <= prefs["MaxHealthyPercentage"] <= 200:
            raise validation_error("MinHealthyPercentage must be 0-100 and MaxHealthyPercentage 100-200")
        if prefs["MinHealthyPercentage"] == 100 and prefs["MaxHealthyPercentage"] == 100:
            raise validation_error("MinHealthyPercentage and MaxHealthyPercentage cannot both be 100")
        prefs.update(_special_preferences(raw))
        if desired_config.get("LaunchTemplate"):
            self._use_launch_template(group, desired_config["LaunchTemplate"])
        refresh = Refresh(refresh_id=str(uuid.uuid4()), group=group.name, preferences=prefs,
                          start_time=self.cloud.clock.now())
        self.refreshes.append(refresh)
        generation = self.cloud.generation
        self.cloud.spawn(f"localcloud-refresh-{group.name}", lambda: self._run(refresh, generation))
        return xml_response(response_xml(SERVICE, "StartInstanceRefresh", {"InstanceRefreshId": refresh.refresh_id}))

    def _use_launch_template(self, group: Any, spec: dict[str, Any]) -> None:
        """Point the group at DesiredConfiguration.LaunchTemplate (kept when the refresh ends)."""
        from localcloud import motoaccess

        ec2 = motoaccess.ec2(self.cloud.region)
        try:
            if spec.get("LaunchTemplateId"):
                template = ec2.get_launch_template(spec["LaunchTemplateId"])
            else:
                template = ec2.get_launch_template_by_name(spec.get("LaunchTemplateName"))
            version = spec.get("Version") or "$Default"
            template.get_version(version)
        except Exception:
            raise validation_error(f"The launch template in DesiredConfiguration does not exist: {spec}") from None
        group.ec2_launch_template = template
        group.launch_config = None
        group.provided_launch_template_version = spec.get("Version")
        group.launch_template_version = version

    def _describe(self, req: ApiRequest, forward: Forward) -> Response:
        name = req.get("AutoScalingGroupName")
        self.cloud.fleet.group(name)
        wanted = set(req.members("InstanceRefreshIds"))
        found = [r.describe(self.cloud.clock.iso) for r in reversed(self.refreshes)
                 if r.group == name and (not wanted or r.refresh_id in wanted)]
        return xml_response(response_xml(SERVICE, "DescribeInstanceRefreshes", {"InstanceRefreshes": found}))

    def _cancel(self, req: ApiRequest, forward: Forward) -> Response:
        name = req.get("AutoScalingGroupName")
        group = self.cloud.fleet.group(name)
        refresh = self.active(group.name)
        if refresh is None:
            raise AwsError("ActiveInstanceRefreshNotFound",
                           f"No in progress or pending Instance Refresh found for Auto Scaling group {group.name}")
        refresh.cancel = True
        refresh.status = "Cancelling"
        return xml_response(response_xml(SERVICE, "CancelInstanceRefresh", {"InstanceRefreshId": refresh.refresh_id}))

    # ------------------------------------------------------------------ the refresh
    def _run(self, refresh: Refresh, generation: int) -> None:
        cloud, fleet = self.cloud, self.cloud.fleet
        with cloud.op_lock(generation):
            group = fleet.group(refresh.group)
            desired = group.desired_capacity or 0
            start_seq = fleet.seq
            skip = refresh.preferences["SkipMatching"]
            from localcloud import motoaccess

            target, _ = motoaccess.group_launch_version(group)
            # MinHealthyPercentage is rounded up; when that leaves no instance to take out and there is no
            # room above desired (MaxHealthyPercentage 100), Auto Scaling still replaces one instance at a
            # time (README: "Instance refresh in a small group")
            min_healthy = math.ceil(desired * refresh.preferences["MinHealthyPercentage"] / 100)
            max_total = math.floor(desired * refresh.preferences["MaxHealthyPercentage"] / 100)
            surge = max(0, max_total - desired)
            if desired - min_healthy < 1 and surge == 0:
                min_healthy = max(0, desired - 1)
            limits = BatchLimits(max_batch=max(1, desired - min_healthy), min_in_service=min_healthy,
                                 max_surge=surge,
                                 pause_seconds=float(refresh.preferences["InstanceWarmup"]))
            refresh.status = "InProgress" if not refresh.cancel else refresh.status

        prefs = refresh.preferences
        protected_pref, standby_pref = prefs["ScaleInProtectedInstances"], prefs["StandbyInstances"]
        checkpoints = list(prefs.get("CheckpointPercentages") or [])
        delay = float(prefs.get("CheckpointDelay") or 0)

        def special(rec: Any) -> tuple[bool, bool]:
            """(protected from scale-in, in Standby) from moto's state of the instance (lock held)."""
            moto_state = fleet._moto_state(rec)
            if moto_state is None:
                return False, False
            return bool(moto_state.protected_from_scale_in), moto_state.lifecycle_state == "Standby"

        def old(rec: Any) -> bool:
            return rec.seq <= start_seq and (not skip or rec.launch_version != target)

        def obsolete(rec: Any) -> bool:
            # Standby instances are not InService: the rolling replacement takes only the others; with
            # StandbyInstances=Terminate they are terminated separately below
            protected, standby = special(rec)
            if not old(rec) or standby:
                return False
            return not protected or protected_pref == "Refresh"

        def waiting() -> list[str]:
            """Old instances the refresh waits for (Wait preferences), lock held."""
            found = []
            for rec in fleet.group_records(refresh.group):
                protected, standby = special(rec)
                if old(rec) and ((standby and standby_pref == "Wait")
                                 or (protected and not standby and protected_pref == "Wait")):
                    found.append(rec.instance_id)
            return found

        def check() -> None:
            if refresh.cancel:
                raise RefreshCancelled()

        state = {"base": 0, "total": 0}

        def progress(done: int, total: int) -> None:
            done, total = state["base"] + done, max(state["total"], state["base"] + total)
            refresh.to_update = max(0, total - done)
            refresh.percentage = 100 if total == 0 else int(100 * done / total)
            # CheckpointPercentages: pause CheckpointDelay seconds (virtual clock) each time the percentage of
            # replaced instances reaches the next checkpoint below 100
            while checkpoints and refresh.percentage >= checkpoints[0]:
                reached = checkpoints.pop(0)
                if reached >= 100 or total == 0:
                    continue
                refresh.status_reason = f"Waiting at checkpoint {reached}% for {int(delay)} seconds"
                until = cloud.clock.now() + delay

                def resumed() -> bool:
                    check()
                    return cloud.clock.now() >= until

                cloud.wait_for(resumed, generation)
                refresh.status_reason = None

        try:
            check()
            with cloud.op_lock(generation):
                state["total"] = sum(1 for r in fleet.group_records(refresh.group) if old(r)
                                     and (obsolete(r) or r.instance_id in waiting()
                                          or (special(r)[1] and standby_pref == "Terminate")))
            while True:
                state["base"] += replace_instances(cloud, refresh.group, obsolete, limits, generation,
                                                   lambda text: None, check, progress)
                if standby_pref == "Terminate":
                    with cloud.op_lock(generation):
                        standby = [r for r in fleet.group_records(refresh.group) if old(r) and special(r)[1]]
                        for rec in standby:
                            # "Amazon EC2 Auto Scaling terminates instances that are in Standby"; they are
                            # not part of the desired capacity, so nothing replaces them
                            fleet.terminate(rec.instance_id, decrement=False, reason="standby terminated",
                                            check_min=False)
                            state["base"] += 1
                    progress(0, 0)
                with cloud.op_lock(generation):
                    held = waiting()
                if not held:
                    break
                refresh.status_reason = (f"Waiting up to {int(WAIT_SECONDS)} seconds for instance(s) {held} to "
                                         "leave Standby or lose scale-in protection")
                deadline = cloud.clock.now() + WAIT_SECONDS

                def released() -> bool:
                    check()
                    return cloud.clock.now() >= deadline or len(waiting()) < len(held) or any(
                        obsolete(r) for r in fleet.group_records(refresh.group) if r.state not in TERMINATING_STATES)

                cloud.wait_for(released, generation)
                with cloud.op_lock(generation):
                    still = waiting()
                    movable = any(obsolete(r) for r in fleet.group_records(refresh.group)
                                  if r.state not in TERMINATING_STATES)
                if cloud.clock.now() >= deadline and still and not movable:
                    raise ReplacementFailed(
                        f"instance(s) {still} stayed protected from scale-in or in Standby for "
                        f"{int(WAIT_SECONDS)} seconds (ScaleInProtectedInstances={protected_pref}, "
                        f"StandbyInstances={standby_pref}); use Refresh/Terminate to replace them or Ignore "
                        "to leave them")
                refresh.status_reason = None
        except RefreshCancelled:
            refresh.status, refresh.status_reason = "Cancelled", "Cancelled by CancelInstanceRefresh"
        except ReplacementFailed as exc:
            refresh.status, refresh.status_reason = "Failed", str(exc)
        else:
            refresh.status, refresh.percentage, refresh.to_update = "Successful", 100, 0
            refresh.status_reason = None
        refresh.end_time = cloud.clock.now()

    # ------------------------------------------------------------------ MaxInstanceLifetime
    def tick(self) -> None:
        """Start replacing instances older than their group's MaxInstanceLifetime (lock held)."""
        fleet = self.cloud.fleet
        now = self.cloud.clock.now()
        for group in list(fleet.backend.autoscaling_groups.values()):
            lifetime = getattr(group, "max_instance_lifetime", None)
            if not lifetime or group.name in self.lifetime_jobs or self.active(group.name) is not None:
                continue
            if getattr(group, "_lc_busy", None):
                continue
            if any(now - r.launched_at >= lifetime for r in fleet.in_service(group.name)):
                self.lifetime_jobs.add(group.name)
                self.cloud.spawn(f"localcloud-lifetime-{group.name}",
                                 lambda name=group.name, limit=lifetime, gen=self.cloud.generation:
                                 self._expire(name, limit, gen))

    def _expire(self, group_name: str, lifetime: int, generation: int) -> None:
        cloud = self.cloud
        try:
            # AWS: "usually one at a time, with a pause between replacements"; when the lifetime leaves no time
            # for that, "up to 10 percent of the current capacity" at once. Terminate first, then launch: the
            # default instance maintenance behaviour for lifetime replacements (README: MaxInstanceLifetime).
            with cloud.op_lock(generation):
                desired = cloud.fleet.group(group_name).desired_capacity or 0
                now = cloud.clock.now()
                expired = [r for r in cloud.fleet.in_service(group_name) if now - r.launched_at >= lifetime]
            batch = 1 if len(expired) <= 1 else max(1, desired // 10)
            limits = BatchLimits(max_batch=batch, min_in_service=max(0, desired - batch), max_surge=0)
            replace_instances(cloud, group_name,
                              lambda r: r.state == "InService" and cloud.clock.now() - r.launched_at >= lifetime,
                              limits, generation, lambda text: log.info("%s: %s", group_name, text))
        except ReplacementFailed as exc:
            log.warning("MaxInstanceLifetime replacement in %s failed: %s", group_name, exc)
        finally:
            if generation == cloud.generation:  # after a reset the set belongs to the new generation
                self.lifetime_jobs.discard(group_name)


def _special_preferences(raw: dict[str, Any]) -> dict[str, Any]:
    """ScaleInProtectedInstances, StandbyInstances, CheckpointPercentages/CheckpointDelay, validated as the
    API Reference describes them (RefreshPreferences); defaults are the CLI/SDK ones (Wait, Wait, none)."""
    protected = str(raw.get("ScaleInProtectedInstances") or "Wait")
    standby = str(raw.get("StandbyInstances") or "Wait")
    if protected not in PROTECTED_CHOICES:
        raise validation_error(f"ScaleInProtectedInstances must be one of {', '.join(PROTECTED_CHOICES)}; "
                               f"got {protected!r}")
    if standby not in STANDBY_CHOICES:
        raise validation_error(f"StandbyInstances must be one of {', '.join(STANDBY_CHOICES)}; got {standby!r}")
    prefs: dict[str, Any] = {"ScaleInProtectedInstances": protected, "StandbyInstances": standby}
    points = raw.get("CheckpointPercentages")
    if isinstance(points, dict):  # query protocol: CheckpointPercentages.member.N
        points = [v for _, v in sorted(points.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0)]
    delay = raw.get("CheckpointDelay")
    if points:
        values = [int(p) for p in (points if isinstance(points, list) else [points])]
        if values != sorted(set(values)) or not all(0 <= v <= 100 for v in values):
            raise validation_error("CheckpointPercentages must be unique values 0-100 in ascending order; "
                                   f"got {values}")
        prefs["CheckpointPercentages"] = values
        prefs["CheckpointDelay"] = DEFAULT_CHECKPOINT_DELAY if delay is None else int(delay)
        if not 0 <= prefs["CheckpointDelay"] <= 172800:
            raise validation_error(f"CheckpointDelay must be 0-172800 seconds; got {delay}")
    elif delay is not None:
        raise validation_error("CheckpointDelay needs CheckpointPercentages (RefreshPreferences)")
    return prefs
