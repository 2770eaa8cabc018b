"""The 24-hour promise by design: when a cycle must start, how long it should take, when to give up.

A check runs every ``check_interval`` (plus up to ``check_splay`` of random delay: Salt's schedule adds a
fresh splay to every run). A check starts a cycle when the oldest instance would otherwise pass
``max_age`` before a cycle started at the *next* check could finish::

    due  <=>  oldest_age + lead >= max_age
    lead  =   check_interval + check_splay + expected_cycle + margin

``expected_cycle`` is ``batches x per_batch``: the batches come from the group's size and the batch size
(the template's ``MaxBatchSize``, or what ``MinHealthyPercentage`` leaves for an instance refresh), the
time per batch from the last cycles recorded on the group (:mod:`phoenix.rebuild.history`), or, before
any, from the LAUNCHING hook's timeout. ``margin`` is what the guarantee has in hand for everything the
plan cannot see: a master that is down, a cycle that fails and has to be retried at a later check. With
the defaults (check hourly, 5 min splay, 6 h margin) a 3 h outage *and* one failed cycle that takes up to
2 h to fail and roll back still leave the oldest instance younger than ``max_age``.

The default deadline of a cycle is derived the same way, with the pessimistic per-batch figure: the hook's
whole timeout (a launch nobody answers is abandoned only then) plus the pause, or twice the slowest
recorded batch when that is longer, for every batch, plus 10 minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from phoenix.rebuild import history as hist
from phoenix.rebuild.options import RebuildOptions, format_duration

DEADLINE_SLACK = 600.0


@dataclass
class Plan:
    """The figures a cycle (or a check) works with; all seconds."""

    instances: int
    batch_size: int
    batches: int
    pause: float
    hook_timeout: float | None
    per_batch: float
    per_batch_source: str
    expected: float
    deadline: float
    deadline_source: str
    lead: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances, "batch_size": self.batch_size, "batches": self.batches,
            "pause_seconds": self.pause, "hook_timeout_seconds": self.hook_timeout,
            "per_batch_seconds": round(self.per_batch, 1), "per_batch_source": self.per_batch_source,
            "expected_seconds": round(self.expected, 1), "deadline_seconds": round(self.deadline, 1),
            "deadline_source": self.deadline_source, "lead_seconds": round(self.lead, 1),
            "text": self.text(),
        }

    def text(self) -> str:
        return (f"{self.instances} instance(s) in {self.batches} batch(es) of {self.batch_size}, expected "
                f"{format_duration(self.expected)} ({format_duration(self.per_batch)} per batch: "
                f"{self.per_batch_source}); deadline {format_duration(self.deadline)} ({self.deadline_source})")


def batch_size(strategy: str, instances: int, max_batch: int, min_healthy_percentage: int) -> int:
    """Instances replaced at once. Instance refresh: what ``MinHealthyPercentage`` (rounded up) leaves out of
    service, at least one (AWS replaces one at a time when the percentage leaves none)."""
    if strategy == "instance_refresh":
        keep = math.ceil(instances * min_healthy_percentage / 100)
        return max(1, instances - keep)
    return max(1, max_batch)


def launch_hook_timeout(hooks: list[dict[str, Any]]) -> float | None:
    """The longest HeartbeatTimeout of the group's LAUNCHING hooks (None without one)."""
    timeouts = [float(h.get("HeartbeatTimeout") or 3600) for h in hooks
                if h.get("LifecycleTransition") == "autoscaling:EC2_INSTANCE_LAUNCHING"]
    return max(timeouts) if timeouts else None


def make_plan(options: RebuildOptions, instances: int, max_batch: int, pause: float,
              hooks: list[dict[str, Any]], entries: list[hist.Entry]) -> Plan:
    """Batches, expected duration, deadline and lead time for a group of ``instances``."""
    n = max(1, instances)
    size = batch_size(options.strategy, n, max_batch, options.min_healthy_percentage)
    batches = math.ceil(n / size)
    if options.strategy == "instance_refresh":
        pause = options.instance_warmup
    hook = launch_hook_timeout(hooks)
    pessimistic = (hook if hook is not None else 3600.0) + pause + hist.LAUNCH_ALLOWANCE
    prior = options.batch_estimate if options.batch_estimate is not None else pessimistic
    per_batch, source = hist.per_batch(entries, prior)
    if options.batch_estimate is not None and not [e for e in entries if e.outcome == "ok"]:
        source = "no recorded cycle yet: phoenix:rebuild:batch_estimate"
    expected = batches * per_batch
    if options.deadline is not None:
        deadline, deadline_source = options.deadline, "phoenix:rebuild:deadline"
    else:
        ok = [e for e in entries if e.outcome == "ok" and e.batches > 0]
        bound = max(pessimistic, 2 * max((e.per_batch for e in ok), default=0.0))
        deadline = batches * bound + DEADLINE_SLACK
        what = "hook timeout" if hook is not None else "1h (no LAUNCHING hook)"
        deadline_source = (f"{batches} batch(es) x {format_duration(bound)} ({what} + pause + launch"
                           + (", or twice the slowest recorded batch" if ok else "") + f") + "
                           f"{format_duration(DEADLINE_SLACK)}")
    lead = options.check_interval + options.check_splay + expected + options.margin
    return Plan(n, size, batches, pause, hook, per_batch, source, expected, deadline, deadline_source, lead)


def due(options: RebuildOptions, plan: Plan, oldest_launch: datetime | None, now: datetime) -> dict[str, Any]:
    """Whether a check at ``now`` must start a cycle, and when the next one is due."""
    lead = plan.lead
    feasible = lead < options.max_age
    if oldest_launch is None:
        return {"due": False, "due_at": None, "due_in_seconds": None, "lead_seconds": round(lead, 1),
                "feasible": feasible, "reason": "the group has no instance with a launch time"}
    age = (now - oldest_launch).total_seconds()
    due_at = oldest_launch + timedelta(seconds=options.max_age - lead)
    is_due = age + lead >= options.max_age
    why = (f"oldest instance {format_duration(age)} old + lead {format_duration(lead)} (check every "
           f"{format_duration(options.check_interval)} + splay {format_duration(options.check_splay)} + expected "
           f"cycle {format_duration(plan.expected)} + margin {format_duration(options.margin)}) "
           f"{'>=' if is_due else '<'} max_age {format_duration(options.max_age)}")
    out = {"due": is_due, "due_at": due_at.isoformat(), "due_in_seconds": round(max(0.0, (due_at - now)
                                                                                     .total_seconds()), 1),
           "lead_seconds": round(lead, 1), "feasible": feasible, "reason": why}
    if not feasible:
        out["warning"] = (f"the lead time {format_duration(lead)} is not shorter than max_age "
                          f"{format_duration(options.max_age)}: every check starts a cycle; lower margin or "
                          "check_interval, or raise max_age")
    return out
