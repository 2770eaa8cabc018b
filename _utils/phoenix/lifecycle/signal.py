"""CONTINUE or ABANDON a lifecycle action exactly once, through the ledger.

:func:`complete` first claims the completion in the ledger (``in_flight`` -> ``completing``: one caller
wins, whoever else asks gets ``sent: False``), then calls ``CompleteLifecycleAction`` with the ledger's
token, then records the final state. "No active Lifecycle Action found" is final (``gone``), never
retried. Any other failure leaves the action ``completing``; the engine retries it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.lifecycle import events
from phoenix.lifecycle.consumer import no_active_action
from phoenix.lifecycle.ledger import ABANDONED, COMPLETING, CONTINUED, GONE, IN_FLIGHT, Action, Ledger

log = logging.getLogger(__name__)

RESULTS = {"CONTINUE": CONTINUED, "ABANDON": ABANDONED}


def send(aws: AWS, ledger: Ledger, action: Action, emit: Callable[[str, dict[str, Any]], Any]) -> dict[str, Any]:
    """Send the completion claimed for ``action`` (state ``completing``) and record the outcome."""
    result = action.result or "ABANDON"
    try:
        aws.call("autoscaling", "complete_lifecycle_action", action.instance_id,
                 AutoScalingGroupName=action.group, LifecycleHookName=action.hook,
                 LifecycleActionToken=action.token, LifecycleActionResult=result)
    except PhoenixAWSError as exc:
        if no_active_action(exc):
            ledger.finish(action.token, GONE, f"{result} not applied: {exc.message}")
            emit(events.tag("gone", action.instance_id), {"instance_id": action.instance_id, "reason": exc.message})
            log.warning("lifecycle: %s for %s: AWS has no active action any more (final): %s", result,
                        action.instance_id, exc.message)
            return {"sent": False, "state": GONE, "reason": exc.message}
        log.warning("lifecycle: %s for %s failed, the engine retries it: %s", result, action.instance_id, exc)
        return {"sent": False, "state": COMPLETING, "reason": str(exc)}
    state = RESULTS[result]
    ledger.finish(action.token, state)
    done = ledger.get(action.token)
    reason = done.reason if done else action.reason
    data: dict[str, Any] = {"instance_id": action.instance_id, "group": action.group,
                            "transition": action.transition, "result": result}
    if result == "ABANDON":
        data["reason"] = reason
    emit(events.tag(state, action.instance_id), data)
    log.info("lifecycle: %s %s for %s%s", action.kind, result, action.instance_id,
             f" ({reason})" if result == "ABANDON" and reason else "")
    return {"sent": True, "state": state, "result": result, "reason": reason}


def complete(aws: AWS, ledger: Ledger, instance_id: str, transition: str, result: str, reason: str | None,
             emit: Callable[[str, dict[str, Any]], Any]) -> dict[str, Any]:
    """CONTINUE/ABANDON the instance's in-flight action for ``transition`` (at most once, ever)."""
    if result not in RESULTS:
        raise ValueError(f"result must be CONTINUE or ABANDON, got {result!r}")
    action = ledger.in_flight(instance_id, transition)
    if action is None:
        latest = ledger.latest(instance_id, transition)
        state = latest.state if latest else "unknown"
        return {"sent": False, "state": state,
                "reason": f"no in-flight action for {instance_id} in the ledger (state: {state})"}
    if not ledger.begin_completion(action.token, result, reason):
        current = ledger.get(action.token)
        return {"sent": False, "state": current.state if current else "unknown",
                "reason": "another caller completed this action"}
    claimed = ledger.get(action.token)
    assert claimed is not None and claimed.state == COMPLETING
    return send(aws, ledger, claimed, emit)


__all__ = ["complete", "send", "RESULTS", "IN_FLIGHT"]
