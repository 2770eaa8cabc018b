"""Replacing a group's instances in batches while keeping a minimum in service.

Used by CloudFormation rolling updates (and their rollback), instance refresh and
MaxInstanceLifetime. Runs in a background thread; takes the cloud lock only for each step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from localcloud.records import TERMINATING_STATES, InstanceRecord

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

log = logging.getLogger(__name__)


class ReplacementFailed(Exception):
    """A batch could not be replaced (an instance was abandoned, or the limits allow no progress)."""


@dataclass
class BatchLimits:
    """How a replacement may proceed."""

    max_batch: int = 1
    min_in_service: int = 0
    max_surge: int | None = None  # extra instances above desired (None: up to MaxSize)
    pause_seconds: float = 0.0  # virtual seconds to wait after each batch (PauseTime / warm-up)


def replace_instances(cloud: "LocalCloud", group_name: str, obsolete: Callable[[InstanceRecord], bool],
                      limits: BatchLimits, generation: int, report: Callable[[str], None],
                      check: Callable[[], None] = lambda: None,
                      progress: Callable[[int, int], None] = lambda done, total: None,
                      after_batch: Callable[[list[str]], None] | None = None,
                      fail_on_abandon: bool = True) -> int:
    """Replace every instance ``obsolete`` selects; returns how many were replaced.

    Per batch: launch extra instances first when taking the batch out would drop the InService count
    below ``min_in_service`` (bounded by MaxSize and ``max_surge``), wait until they are InService,
    terminate the batch (the group launches replacements), wait until the replacements are InService,
    then pause (or call ``after_batch`` with the batch's new instance ids, which may raise
    :class:`ReplacementFailed`, e.g. when resource signals do not arrive). Raises
    :class:`ReplacementFailed` when a new instance is abandoned, unless ``fail_on_abandon`` is False: then
    the group launches a replacement for it (as Auto Scaling does) and the batch waits for that one.
    """
    fleet = cloud.fleet
    with cloud.op_lock(generation):
        total = len([r for r in fleet.group_records(group_name) if obsolete(r)])
    replaced = 0
    progress(0, total)
    while True:
        check()
        with cloud.op_lock(generation):
            group = fleet.group(group_name)
            records = fleet.group_records(group_name)
            candidates = [r for r in records if r.state not in TERMINATING_STATES and obsolete(r)]
            if not candidates:
                return replaced
            desired = group.desired_capacity or 0
            in_service = sum(r.state == "InService" for r in records)
            batch = min(max(1, limits.max_batch), len(candidates))
            removable = max(0, in_service - limits.min_in_service)
            surge = 0
            if removable < batch:
                headroom = max(0, (group.max_size or desired) - desired)
                if limits.max_surge is not None:
                    headroom = min(headroom, limits.max_surge)
                surge = min(batch - removable, headroom)
                batch = min(batch, removable + surge)
            if batch <= 0:
                raise ReplacementFailed(
                    f"cannot replace instances of {group_name}: {in_service} InService, at least "
                    f"{limits.min_in_service} must stay in service and MaxSize {group.max_size} leaves no room "
                    "to launch first")
            mark = fleet.seq
            if surge:
                report(f"Temporarily setting autoscaling group DesiredCapacity to {desired + surge}.")
                fleet.launch(group_name, surge)
        if surge:
            _wait_in_service(cloud, group_name, mark, surge, generation, check, fail_on_abandon)
        with cloud.op_lock(generation):
            records = fleet.group_records(group_name)
            candidates = [r for r in records if r.state not in TERMINATING_STATES and obsolete(r)]
            victims = sorted(candidates, key=lambda r: (r.state == "InService", r.seq))[:batch]
            ids = [v.instance_id for v in victims]
            report(f"Terminating instance(s) {ids}; replacing with {len(victims)} new instance(s).")
            for index, victim in enumerate(victims):
                fleet.terminate(victim.instance_id, decrement=index < surge, reason="replaced")
        _wait_in_service(cloud, group_name, mark, len(victims), generation, check, fail_on_abandon)
        cloud.wait_for(lambda: all(not fleet.records[i].alive for i in ids), generation)
        if after_batch is not None:
            with cloud.op_lock(generation):
                new_ids = [r.instance_id for r in fleet.group_records(group_name) if r.seq > mark]
            after_batch(new_ids)
        replaced += len(victims)
        progress(replaced, max(total, replaced))
        report(f"Successfully terminated instance(s) {ids} (Progress {int(100 * replaced / max(total, replaced))}%).")
        if limits.pause_seconds > 0:
            until = cloud.clock.now() + limits.pause_seconds

            def paused() -> bool:
                check()
                return cloud.clock.now() >= until

            cloud.wait_for(paused, generation)


def _wait_in_service(cloud: "LocalCloud", group_name: str, mark: int, count: int, generation: int,
                     check: Callable[[], None], fail_on_abandon: bool = True) -> None:
    """Wait until ``count`` instances launched after ``mark`` are InService; fail on an abandon (when asked)."""
    fleet = cloud.fleet

    def ready() -> bool:
        check()
        new = [r for r in fleet.records.values() if r.group == group_name and r.seq > mark]
        abandoned = [r.instance_id for r in new if r.end_reason == "abandoned"]
        if abandoned and fail_on_abandon:
            raise ReplacementFailed(f"new instance(s) {abandoned} were abandoned by a lifecycle hook "
                                    "before reaching InService")
        return sum(r.state == "InService" for r in new) >= count

    cloud.wait_for(ready, generation)
