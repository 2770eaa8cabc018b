"""Progress reporting: Salt event tags ``phoenix/rebuild/<group>/<stage>`` and log lines.

Stages (the last part of the tag), in the order a cycle emits them:

=====================  ================================================================
``started``            a cycle began (strategy, dry_run, instance count, oldest age)
``preflight``          preflight finished (``ok``, ``problems``, ``warnings``)
``policy/fixed``       the stack policy was replaced by the recommended one
``triggered``          UpdateStack / StartInstanceRefresh was accepted
``instance/launched``  a new instance appeared in the group
``instance/in_service`` a new instance reached InService
``instance/replaced``  an instance that existed before the cycle left the group
``instance/abandoned`` a new instance left the group without reaching InService
``stack_event``        a CloudFormation event of the group resource (AWS's rolling-update messages)
``batch``              a rolling-update batch finished (``batch`` number, ``percent`` from CloudFormation)
``progress``           counts after each change (``percent`` for instance refresh); every ``heartbeat``
                       seconds without change, a ``progress`` with ``heartbeat: True``
``lock/stale``         an interrupted cycle's lock was found (its update had ended) and removed
``lock/acquired``      AWS accepted this cycle's update; its lock tag is written
``lock/released``      the cycle removed its own lock tag (``released: False`` when it no longer held it)
``adopted``            this call took over an interrupted cycle whose update still runs, and watches it
``cancelled``          the cycle cancelled the update (deadline or abandon budget); the rollback is watched
``capacity``           after a rollback the group's DesiredCapacity was set back to its size before the cycle
``finished``           the cycle succeeded (the summary)
``failed``             the cycle failed or was refused (reason; the old fleet keeps serving)
=====================  ================================================================

Every payload carries ``cycle_id``, ``group``, ``stack`` and ``elapsed`` (seconds since start).
Payloads never hold secrets: only names, ids, counts and AWS status text.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

TAG_PREFIX = "phoenix/rebuild"
STAGES = (
    "started", "preflight", "policy/fixed", "triggered", "instance/launched", "instance/in_service",
    "instance/replaced", "instance/abandoned", "stack_event", "batch", "progress", "finished", "failed",
    "lock/stale", "lock/acquired", "lock/released", "adopted", "cancelled", "capacity",
)

Emit = Callable[[str, dict[str, Any]], Any]

log = logging.getLogger("phoenix.rebuild")


def tag(group: str, stage: str) -> str:
    """``phoenix/rebuild/<group>/<stage>``; ``stage`` must be one of :data:`STAGES`."""
    if stage not in STAGES:
        raise ValueError(f"unknown rebuild stage {stage!r}")
    return f"{TAG_PREFIX}/{group}/{stage}"


class Reporter:
    """Sends events through ``emit`` (may be ``None``: logs only) and logs one line per event.

    A failing ``emit`` (bus down) is logged once and never breaks the cycle.
    """

    def __init__(self, group: str, stack: str | None, cycle_id: str, emit: Emit | None = None,
                 monotonic: Callable[[], float] = time.monotonic, logger: logging.Logger = log) -> None:
        self.group = group
        self.stack = stack
        self.cycle_id = cycle_id
        self.emit = emit
        self.monotonic = monotonic
        self.started = monotonic()
        self.log = logger
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self._emit_failed = False

    def elapsed(self) -> float:
        return round(self.monotonic() - self.started, 3)

    def event(self, stage: str, message: str = "", level: int = logging.INFO, **data: Any) -> dict[str, Any]:
        payload = {"cycle_id": self.cycle_id, "group": self.group, "stack": self.stack,
                   "elapsed": self.elapsed(), **data}
        if message:
            payload["message"] = message
        t = tag(self.group, stage)
        self.sent.append((t, payload))
        counts = " ".join(f"{k}={payload[k]}" for k in ("replaced", "launched", "in_service", "abandoned",
                                                        "remaining_old", "percent") if k in payload)
        self.log.log(level, "rebuild %s [%s] %s after %.1fs%s%s", self.group, stage, message or "",
                     payload["elapsed"], ": " if counts else "", counts)
        if self.emit is not None:
            try:
                self.emit(t, payload)
            except Exception as exc:  # noqa: BLE001 - the bus is best effort, the cycle is not
                if not self._emit_failed:
                    self.log.warning("rebuild %s: could not send event %s (%s); continuing with logs only",
                                     self.group, t, exc)
                    self._emit_failed = True
        return payload
