"""How a provisioning step reports, the one way for every runner that orch.provision and orch.retire call
(``lifecycle.*`` and ``provision.*``): the return dict the orchestration sees, the
``phoenix/lifecycle/step/<instance-id>`` event, a log line, and for a failure the reason in the ledger, where
``lifecycle.complete`` (the ABANDON) reads it. Also the check every step makes first: that the calling
orchestration holds the instance's in-flight action.

Pure Python: ``emit`` is what :func:`phoenix.saltglue.emitter` returns, ``ledger`` a
:class:`phoenix.lifecycle.ledger.Ledger`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import phoenix.lifecycle.events
import phoenix.saltglue

Emit = Callable[[str, dict[str, Any]], bool]


def _seconds(started: float | None) -> float | None:
    return round(time.monotonic() - started, 3) if started is not None else None


def failed(emit: Emit | None, logger: logging.Logger, instance_id: str, step: str, reason: str,
           started: float | None = None, ledger: Any = None, token: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """A failed step: the reason in the ledger (when ``token`` names the action), an event, a warning."""
    seconds = _seconds(started)
    if ledger is not None and token is not None:
        ledger.note_reason(token, f"{step}: {reason}")
        ledger.note(instance_id, "failed", f"{step}: {reason}", token=token)
    logger.warning("%s of %s failed: %s", step, instance_id, reason)
    phoenix.saltglue.fire(emit, phoenix.lifecycle.events.tag("step", instance_id),
                          {"instance_id": instance_id, "step": step, "result": False, "reason": reason,
                           "seconds": seconds, **extra}, logger)
    return {"result": False, "instance_id": instance_id, "step": step, "comment": reason, "seconds": seconds,
            **extra}


def done(emit: Emit | None, logger: logging.Logger, instance_id: str, step: str, comment: str, started: float,
         **extra: Any) -> dict[str, Any]:
    """A step that succeeded: an event and an info line."""
    seconds = _seconds(started)
    logger.info("%s of %s done in %.1fs: %s", step, instance_id, seconds, comment)
    phoenix.saltglue.fire(emit, phoenix.lifecycle.events.tag("step", instance_id),
                          {"instance_id": instance_id, "step": step, "result": True, "seconds": seconds, **extra},
                          logger)
    return {"result": True, "instance_id": instance_id, "step": step, "comment": comment, "seconds": seconds,
            **extra}


def ownership(ledger: Any, instance_id: str, transition: str, owner: str) -> tuple[Any, str | None]:
    """``(action, None)`` when ``owner`` holds the instance's in-flight action, else ``(None, why not)``."""
    action = ledger.in_flight(instance_id, transition)
    if action is None:
        return None, "no in-flight action in the ledger"
    if action.claimed_by != owner:
        return None, "this orchestration does not hold the action's claim"
    return action, None


__all__ = ["failed", "done", "ownership"]
