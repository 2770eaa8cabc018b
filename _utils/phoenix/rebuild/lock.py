"""The cycle lock: AWS's own update is the lock, a group tag is its visible record.

Exclusion comes from the one mutating call a cycle makes: CloudFormation accepts one ``UpdateStack`` at a
time and Auto Scaling one ``StartInstanceRefresh``; the second is refused while the first runs. So of two
cycles that pass preflight together exactly one gets its update accepted: the *winner*. Only the winner
writes the tag ``phoenix:rebuild:cycle`` (right after AWS accepted its update), and only a cycle whose
value is in the tag removes it. A loser never writes or deletes anything.

The tag names its operation (the ``RebuildTimestamp`` value or the instance refresh id), so every later
caller can ask AWS whether that operation still runs:

* running                      -> another cycle holds the group: refuse (or, with ``takeover``, adopt it
                                  and watch it to its end); a dead owner on this host is adopted at once;
* ended, owner gone or the end
  older than :data:`RELEASE_GRACE` -> stale: report what it left behind, remove the tag, carry on;
* ended moments ago            -> its owner is still writing its summary: refuse for now.

Value (AWS allows 256 characters): ``v2|<cycle id>|<owner host:pid>|<started ISO>|<strategy>|<operation>``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.rebuild.options import format_duration

LOCK_TAG = "phoenix:rebuild:cycle"
RELEASE_GRACE = 120.0
ACTIVE_REFRESH = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")


def owner_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


@dataclass
class Lock:
    raw: str
    cycle_id: str = "?"
    owner: str = "?"
    started: datetime | None = None
    strategy: str = "?"
    operation: str = ""
    garbled: bool = False

    def value(self) -> str:
        return self.raw

    def age(self, now: datetime) -> float | None:
        return (now - self.started).total_seconds() if self.started else None

    def owner_dead(self) -> bool:
        """True only when the owner ran on this host and its process is gone."""
        host, _, pid = self.owner.rpartition(":")
        if host != socket.gethostname()[:60] or not pid.isdigit():
            return False
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def make_value(cycle_id: str, started: datetime, strategy: str, operation: str, owner: str | None = None) -> str:
    value = f"v2|{cycle_id}|{owner or owner_id()}|{started.isoformat(timespec='seconds')}|{strategy}|{operation}"
    return value[:256]


def parse(value: str | None) -> Lock | None:
    if not value:
        return None
    parts = value.split("|")
    if len(parts) != 6 or parts[0] != "v2":
        return Lock(raw=value, garbled=True)
    try:
        started = datetime.fromisoformat(parts[3])
    except ValueError:
        started = None
    return Lock(raw=value, cycle_id=parts[1], owner=parts[2], started=started, strategy=parts[4],
                operation=parts[5])


def from_tags(tags: list[dict[str, Any]]) -> Lock | None:
    for tag in tags:
        if tag.get("Key") == LOCK_TAG:
            return parse(tag.get("Value"))
    return None


@dataclass
class Assessment:
    """What AWS says about a lock's operation."""

    state: str  # none | running | stale | releasing
    lock: Lock | None
    op_status: str | None = None
    message: str = ""

    def as_dict(self, now: datetime) -> dict[str, Any] | None:
        if self.lock is None:
            return None
        return {"cycle_id": self.lock.cycle_id, "owner": self.lock.owner, "strategy": self.lock.strategy,
                "operation": self.lock.operation, "started": self.lock.started.isoformat() if self.lock.started
                else None, "age_seconds": round(self.lock.age(now), 1) if self.lock.age(now) is not None else None,
                "state": self.state, "operation_status": self.op_status, "message": self.message}


def assess(lock: Lock | None, now: datetime, stack_status: str | None, stack_params: dict[str, str],
           timestamp_parameter: str, refreshes: list[dict[str, Any]] | None) -> Assessment:
    """Decide from AWS's state (stack status and parameters, instance refreshes) whether ``lock`` is live."""
    if lock is None:
        return Assessment("none", None)
    who = f"cycle {lock.cycle_id} (owner {lock.owner}, {lock.strategy}, started {lock.started or '?'})"
    age = lock.age(now)
    if lock.garbled:
        running = bool(stack_status and stack_status.endswith("_IN_PROGRESS")) or any(
            r.get("Status") in ACTIVE_REFRESH for r in refreshes or [])
        if running:
            return Assessment("running", lock, stack_status, f"an unreadable lock tag {lock.raw!r} and an update "
                              "in progress")
        return Assessment("stale", lock, stack_status, f"an unreadable lock tag {lock.raw!r} and no update running")
    if lock.strategy == "cloudformation":
        ours = stack_params.get(timestamp_parameter) == lock.operation
        running = bool(stack_status and stack_status.endswith("_IN_PROGRESS"))
        if running:
            status = stack_status
            live = True
        else:
            live = False
            status = (f"{stack_status} (its {timestamp_parameter} is the stack's)" if ours
                      else f"{stack_status}, rolled back or replaced (the stack's {timestamp_parameter} is no longer "
                      "its)")
    else:
        match = [r for r in refreshes or [] if r.get("InstanceRefreshId") == lock.operation]
        status = match[0].get("Status") if match else "not found"
        live = bool(match) and status in ACTIVE_REFRESH
    if live:
        dead = lock.owner_dead()
        return Assessment("running", lock, status, f"{who} is running: its update is {status}"
                          + ("; its owner process is gone" if dead else ""))
    if lock.owner_dead() or age is None or age > RELEASE_GRACE:
        return Assessment("stale", lock, status, f"{who} was interrupted: it left its lock, and its update ended "
                          f"{status}")
    return Assessment("releasing", lock, status, f"{who} has just ended ({status}) and is releasing its lock "
                      f"({format_duration(age)} ago)")


def write(aws: AWS, group: str, value: str) -> None:
    aws.call("autoscaling", "create_or_update_tags", f"group {group}", Tags=[{
        "ResourceId": group, "ResourceType": "auto-scaling-group", "Key": LOCK_TAG, "Value": value,
        "PropagateAtLaunch": False}])


def current(aws: AWS, group: str) -> Lock | None:
    groups = aws.call("autoscaling", "describe_auto_scaling_groups", f"group {group}",
                      AutoScalingGroupNames=[group]).get("AutoScalingGroups", [])
    return from_tags(groups[0].get("Tags", [])) if groups else None


def release(aws: AWS, group: str, value: str) -> str:
    """Remove the tag if it still holds ``value``. Returns "released", "not held" or an error text."""
    try:
        now = current(aws, group)
        if now is None or now.raw != value:
            return "not held"
        aws.call("autoscaling", "delete_tags", f"group {group}", Tags=[{
            "ResourceId": group, "ResourceType": "auto-scaling-group", "Key": LOCK_TAG}])
        return "released"
    except PhoenixAWSError as exc:
        return f"could not remove lock tag {LOCK_TAG}: {exc}"


def unlock(aws: AWS, group: str, assessment: Assessment, cycle_id: str | None = None, force: bool = False,
           test: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """``rebuild.unlock``: remove the lock unless its update still runs (``force`` overrides)."""
    found = assessment.lock
    if found is None:
        return {"result": True, "removed": False, "lock": None,
                "comment": f"Group {group} has no cycle lock ({LOCK_TAG}); nothing to do."}
    info = assessment.as_dict(now) if now else {"cycle_id": found.cycle_id, "owner": found.owner}
    if cycle_id and found.cycle_id != cycle_id:
        return {"result": False, "removed": False, "lock": info,
                "comment": f"The lock of group {group} belongs to cycle {found.cycle_id}, not {cycle_id}; left it."}
    if assessment.state == "running" and not force:
        return {"result": False, "removed": False, "lock": info,
                "comment": f"Refused: {assessment.message}. Removing its lock would let another cycle start "
                           "against a running update. Wait for it, adopt it with rebuild.cycle takeover=True, or "
                           "pass force=True."}
    if test:
        return {"result": True, "removed": False, "would_remove": True, "lock": info,
                "comment": f"Would remove the lock of cycle {found.cycle_id} (owner {found.owner}) from group "
                           f"{group}: {assessment.message or 'its update is not running'}."}
    outcome = release(aws, group, found.raw)
    if outcome != "released":
        return {"result": False, "removed": False, "lock": info,
                "comment": f"Lock of group {group} not removed: {outcome}."}
    return {"result": True, "removed": True, "lock": info,
            "comment": f"Removed the lock of cycle {found.cycle_id} (owner {found.owner}) from group {group}"
                       + (f" although its update is {assessment.op_status} (force=True)" if assessment.state ==
                          "running" else f": {assessment.message or 'its update had ended'}") + "."}
