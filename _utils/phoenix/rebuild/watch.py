"""Watching a running cycle: bounded polling with exponential backoff, snapshots and a tracker.

The loop is pure over three callables (``fetch`` a :class:`Snapshot`, ``sleep``, ``monotonic``) so it
is unit-tested without AWS and without waiting.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator

from phoenix.rebuild.progress import Reporter

TERMINATING = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated")
PENDING = ("Pending", "Pending:Wait", "Pending:Proceed")

CFN_SUCCESS = ("UPDATE_COMPLETE",)
CFN_FAILURE = ("UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "UPDATE_FAILED", "ROLLBACK_COMPLETE",
               "ROLLBACK_FAILED")
REFRESH_SUCCESS = ("Successful",)
#: ``Baking`` is not here: AWS reports it while the refresh waits its bake time after the last batch, i.e. the
#: refresh is still running (preflight treats it as active too: ``phoenix.rebuild.lock.ACTIVE_REFRESH``)
REFRESH_FAILURE = ("Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed")
#: CloudFormation's rolling-update event text: "Successfully terminated instance(s) [...] (Progress 25%)."
BATCH_DONE = re.compile(r"\(Progress (\d+(?:\.\d+)?)%\)")


@dataclass
class Backoff:
    """Delays ``initial, initial*factor, ...`` capped at ``maximum``; :meth:`reset` after progress."""

    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 30.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial

    def delays(self, n: int) -> Iterator[float]:
        for _ in range(n):
            yield self.next()


@dataclass
class InstanceView:
    instance_id: str
    lifecycle_state: str
    version: str = "-"
    launch_time: datetime | None = None


@dataclass
class Snapshot:
    """What one poll saw. ``status`` is the stack status or the instance refresh status."""

    status: str | None
    reason: str | None = None
    instances: dict[str, InstanceView] = field(default_factory=dict)
    percent: float | None = None
    stack_events: list[dict[str, Any]] = field(default_factory=list)
    lock: str | None = None  # the group's lock tag value at this poll
    desired: int | None = None


@dataclass
class Tracker:
    """Turns successive snapshots into events and keeps the counts for the summary."""

    original: set[str]
    reporter: Reporter | None = None
    launched: set[str] = field(default_factory=set)
    in_service: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)
    abandoned: set[str] = field(default_factory=set)
    seen_events: set[str] = field(default_factory=set)
    batches: int = 0
    last: Snapshot | None = None
    #: abandoned launches tolerated (None: no budget); in the first batch, and in the whole cycle
    max_abandons: int | None = None
    max_abandons_first_batch: int | None = None
    first_batch_abandons: int = 0

    def first_batch_done(self, snap: Snapshot | None = None) -> bool:
        snap = snap or self.last
        return self.batches > 0 or bool(snap and (snap.percent or 0) > 0)

    def over_budget(self) -> str | None:
        """Why the abandon budget is exceeded, or None."""
        if self.max_abandons_first_batch is not None and self.first_batch_abandons > self.max_abandons_first_batch:
            return (f"{self.first_batch_abandons} launch(es) abandoned in the first batch (budget "
                    f"{self.max_abandons_first_batch}): the new launch version does not provision")
        if self.max_abandons is not None and len(self.abandoned) > self.max_abandons:
            return f"{len(self.abandoned)} launches abandoned in this cycle (budget {self.max_abandons})"
        return None

    def counts(self, snap: Snapshot | None = None) -> dict[str, int]:
        snap = snap or self.last
        current = set(snap.instances) if snap else set()
        return {
            "replaced": len(self.replaced),
            "launched": len(self.launched),
            "in_service": len(self.in_service),
            "abandoned": len(self.abandoned),
            "remaining_old": len(self.original & current),
        }

    def _emit(self, stage: str, message: str, **data: Any) -> None:
        if self.reporter is not None:
            self.reporter.event(stage, message, **data)

    def update(self, snap: Snapshot) -> bool:
        """Record ``snap``; emit events for what changed. Returns True when anything changed."""
        changed = False
        abandoned_before = len(self.abandoned)
        in_first_batch = not self.first_batch_done()
        prev = self.last.instances if self.last else {}
        for iid, view in snap.instances.items():
            if iid in self.original:
                continue
            if iid not in self.launched:
                self.launched.add(iid)
                changed = True
                self._emit("instance/launched", f"{iid} launched ({view.lifecycle_state})", instance_id=iid,
                           lifecycle_state=view.lifecycle_state, launch_version=view.version)
            if view.lifecycle_state == "InService" and iid not in self.in_service:
                self.in_service.add(iid)
                changed = True
                self._emit("instance/in_service", f"{iid} is InService", instance_id=iid,
                           launch_version=view.version)
            if view.lifecycle_state in TERMINATING and iid not in self.in_service and iid not in self.abandoned:
                self.abandoned.add(iid)
                changed = True
                self._emit("instance/abandoned", f"{iid} is {view.lifecycle_state} without reaching InService",
                           instance_id=iid, lifecycle_state=view.lifecycle_state)
        for iid in self.launched - set(snap.instances):
            if iid not in self.in_service and iid not in self.abandoned:
                self.abandoned.add(iid)
                changed = True
                self._emit("instance/abandoned", f"{iid} left the group without reaching InService",
                           instance_id=iid, lifecycle_state=prev.get(iid).lifecycle_state if iid in prev else None)
        for iid in self.original:
            view = snap.instances.get(iid)
            gone = view is None or view.lifecycle_state in TERMINATING
            if gone and iid not in self.replaced:
                self.replaced.add(iid)
                changed = True
                self._emit("instance/replaced", f"{iid} (from before the cycle) is leaving the group",
                           instance_id=iid, lifecycle_state=view.lifecycle_state if view else "Terminated")
        for ev in reversed(snap.stack_events):  # oldest first
            eid = ev.get("EventId")
            if eid and eid not in self.seen_events:
                self.seen_events.add(eid)
                changed = True
                reason = ev.get("ResourceStatusReason") or ""
                self._emit("stack_event", reason or ev.get("ResourceStatus", ""),
                           resource=ev.get("LogicalResourceId"), status=ev.get("ResourceStatus"), reason=reason)
                done = BATCH_DONE.search(reason)
                if done:
                    self.batches += 1
                    self._emit("batch", f"batch {self.batches} done ({done.group(1)}%)", batch=self.batches,
                               percent=float(done.group(1)), **self.counts(snap))
        if in_first_batch:
            self.first_batch_abandons += len(self.abandoned) - abandoned_before
        if self.last is None or self.last.status != snap.status or self.last.percent != snap.percent:
            changed = True
        if changed:
            self._emit("progress", f"status {snap.status}", status=snap.status, percent=snap.percent,
                       **self.counts(snap))
        self.last = snap
        return changed


def outcome(strategy: str, snap: Snapshot) -> str | None:
    """``"succeeded"``, ``"failed"`` or ``None`` (still running) for ``snap``."""
    if strategy == "cloudformation":
        if snap.status in CFN_SUCCESS:
            return "succeeded"
        if snap.status in CFN_FAILURE:
            return "failed"
        return None
    if snap.status in REFRESH_SUCCESS:
        return "succeeded"
    if snap.status in REFRESH_FAILURE:
        return "failed"
    return None


@dataclass
class WatchResult:
    outcome: str  # "succeeded" | "failed" | "deadline" | "abandon_budget" | "lock_lost"
    snapshot: Snapshot | None
    polls: int
    detail: str | None = None


def watch(
    strategy: str,
    fetch: Callable[[], Snapshot],
    tracker: Tracker,
    backoff: Backoff,
    deadline: float,
    sleep: Callable[[float], Any] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    heartbeat: float = 60.0,
    max_poll_errors: int = 3,
    lock_value: str | None = None,
    until_settled: bool = False,
) -> WatchResult:
    """Poll ``fetch`` until the cycle ends or ``deadline`` seconds pass.

    The delay grows by ``backoff`` while nothing changes and drops back to its initial value after
    each change, so a busy rollout is followed closely and a quiet one costs few API calls. The last
    sleep is cut short so the deadline is honoured to within one poll. While nothing changes, a
    ``progress`` event with ``heartbeat: True`` goes out every ``heartbeat`` seconds so watchers know
    the cycle is alive. A poll that raises is retried (after the next backoff delay) up to
    ``max_poll_errors`` times in a row; then the error propagates.

    It also stops early with ``abandon_budget`` when the tracker's abandon budget is exceeded, and with
    ``lock_lost`` when ``lock_value`` is given and the group's lock tag no longer holds it (an operator ran
    ``rebuild.unlock`` or another call took the cycle over). With ``until_settled`` (watching a cancelled
    update roll back) only the final status ends it.
    """
    start = monotonic()
    last_report = start
    polls = 0
    snap: Snapshot | None = None
    errors = 0
    while True:
        try:
            snap = fetch()
        except Exception as exc:  # noqa: BLE001 - AWS errors after botocore's own retries
            errors += 1
            if errors >= max_poll_errors or deadline - (monotonic() - start) <= 0:
                raise
            if tracker.reporter is not None:
                tracker.reporter.log.warning("rebuild %s: poll failed (%d/%d), retrying: %s",
                                             tracker.reporter.group, errors, max_poll_errors, exc)
            sleep(min(backoff.next(), max(deadline - (monotonic() - start), 0)))
            continue
        errors = 0
        polls += 1
        if tracker.update(snap):
            backoff.reset()
            last_report = monotonic()
        elif heartbeat and monotonic() - last_report >= heartbeat and tracker.reporter is not None:
            tracker.reporter.event("progress", f"still {snap.status}", heartbeat=True, status=snap.status,
                                   percent=snap.percent, **tracker.counts(snap))
            last_report = monotonic()
        result = outcome(strategy, snap)
        if result is not None:
            return WatchResult(result, snap, polls)
        if not until_settled:
            budget = tracker.over_budget()
            if budget:
                return WatchResult("abandon_budget", snap, polls, budget)
            if lock_value is not None and snap.lock != lock_value:
                return WatchResult("lock_lost", snap, polls, f"the lock tag now holds {snap.lock!r}")
        left = deadline - (monotonic() - start)
        if left <= 0:
            return WatchResult("deadline", snap, polls)
        sleep(min(backoff.next(), left))
