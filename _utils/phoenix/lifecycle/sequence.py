"""The order of a lifecycle action's steps, and what a failure does: the one place that decides it for
``orch.provision`` (``provision.launching``) and ``orch.retire`` (``provision.terminating``).

Each step is a runner function (``lifecycle.*``, ``provision.*``, or a site's own) called in the same
process through ``call(name, **kwargs)``; it reports with :mod:`phoenix.lifecycle.steps` (event, log,
ledger reason) and returns a dict whose ``result`` says whether it worked. Running them in one runner
instead of one ``salt.runner`` state each saves Salt's per-state runner start (a new RunnerClient and its
loaders), which was most of the time between steps (``bench/provision.py``).

Launching: ``claim`` -> each of ``before`` -> ``CONTINUE`` -> each of ``after``. A failed claim stops with
nothing signalled (the action is not ours). The first ``before`` step that fails or raises sends ABANDON
at once with its reason; the rest do not run. ``after`` steps (secrets closed, inventory) run only after a
CONTINUE that was sent, and their failures are reported but are not an ABANDON reason.

Terminating: ``claim`` -> each of ``before`` (all run; a failure is reported) -> ``CONTINUE`` (the instance
goes either way) -> each of ``after``.

Pure Python: no Salt import; ``call`` is the runner loader's ``__salt__[name](**kwargs)`` in production.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

Call = Callable[..., Any]

#: orch.provision's steps between the claim and CONTINUE
LAUNCH_BEFORE = ("lifecycle.wait_minion", "lifecycle.highstate", "provision.reboot_if_required",
                 "lifecycle.health_check", "provision.swap_profile")
#: after a CONTINUE
LAUNCH_AFTER = ("provision.close_secrets", "provision.refresh_inventory")
#: orch.retire's steps between the claim and CONTINUE, and after it
RETIRE_BEFORE = ("lifecycle.retire", "provision.forget")
RETIRE_AFTER = ("provision.refresh_inventory",)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")


def check_names(names: Any, known: Callable[[str], bool], what: str) -> list[str]:
    """The step names as strings, or ValueError naming the first that is not a loaded runner function."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise ValueError(f"{what} must be a list of runner functions (module.function), got {names!r}")
    out = []
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{what}: {name!r} is not a runner function name (module.function)")
        if not known(name):
            raise ValueError(f"{what}: {name} is not a loaded runner function (a typo, or the module is not synced "
                             "to the master: salt-run saltutil.sync_runners)")
        out.append(name)
    return out


def _call(call: Call, name: str, label: str, **kwargs: Any) -> dict[str, Any]:
    """One step's return; an exception or a return without a boolean ``result`` is a failed step."""
    try:
        out = call(name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a step that raises is a failed step, never a silent pass
        return {"result": False, "step": label, "comment": f"{name} raised {type(exc).__name__}: {exc}"}
    if not isinstance(out, dict) or not isinstance(out.get("result"), bool):
        return {"result": False, "step": label, "comment": f"{name} returned {out!r}, not a step result"}
    out.setdefault("step", label)
    return out


def _summary(instance_id: str, outcome: str, steps: list[dict[str, Any]], started: float, ok: bool) -> dict[str, Any]:
    names = ", ".join(f"{s['step']}{'' if s['result'] else ' (failed)'}" for s in steps)
    seconds = round(time.monotonic() - started, 3)
    return {"result": ok, "instance_id": instance_id, "outcome": outcome, "seconds": seconds,
            "comment": f"{outcome} in {seconds:.1f}s: {names}", "steps": steps}


def _complete(call: Call, instance_id: str, owner: str, kind: str, result: str,
              reason: str | None = None) -> dict[str, Any]:
    extra = {"reason": reason} if reason else {}
    return _call(call, "lifecycle.complete", "signal", instance_id=instance_id, result=result, kind=kind, owner=owner,
                 **extra)


def launching(call: Call, instance_id: str, owner: str, before: Sequence[str] = LAUNCH_BEFORE,
              after: Sequence[str] = LAUNCH_AFTER, misconfigured: str | None = None) -> dict[str, Any]:
    """Provision ``instance_id``: claim, ``before`` steps, CONTINUE or ABANDON, ``after`` steps.

    Every step is called with ``instance_id`` and ``owner`` (the caller drops ``owner`` for a function
    that does not take it). ``misconfigured`` (the step lists are wrong) ABANDONs right after the claim
    with that reason: the instance is replaced at once instead of waiting for the hook's timeout.
    """
    started = time.monotonic()
    steps = [_call(call, "lifecycle.claim", "claim", instance_id=instance_id, kind="launching", owner=owner)]
    if not steps[0]["result"]:
        return _summary(instance_id, "ignored", steps, started, False)
    if misconfigured:
        steps.append({"result": False, "step": "steps", "comment": misconfigured})
        steps.append(_complete(call, instance_id, owner, "launching", "ABANDON", f"steps: {misconfigured}"))
        return _summary(instance_id, "ABANDON", steps, started, False)
    for name in before:
        out = _call(call, name, name, instance_id=instance_id, owner=owner)
        steps.append(out)
        if not out["result"]:
            signal = _complete(call, instance_id, owner, "launching", "ABANDON", f"{out['step']}: {out['comment']}")
            steps.append(signal)
            return _summary(instance_id, "ABANDON" if signal["result"] else "ABANDON not sent", steps, started, False)
    signal = _complete(call, instance_id, owner, "launching", "CONTINUE")
    steps.append(signal)
    if not signal["result"]:
        return _summary(instance_id, "CONTINUE not sent", steps, started, False)
    for name in after:
        steps.append(_call(call, name, name, instance_id=instance_id, owner=owner))
    return _summary(instance_id, "CONTINUE", steps, started, all(s["result"] for s in steps))


def terminating(call: Call, instance_id: str, owner: str, before: Sequence[str] = RETIRE_BEFORE,
                after: Sequence[str] = RETIRE_AFTER, misconfigured: str | None = None) -> dict[str, Any]:
    """Retire ``instance_id``: claim, every ``before`` step (a failure is reported, the instance goes
    anyway), CONTINUE, then ``after`` (only when ``before`` all worked: the inventory follows the key).
    ``misconfigured``: no clean-up step runs, CONTINUE is sent, the run fails with that reason."""
    started = time.monotonic()
    steps = [_call(call, "lifecycle.claim", "claim", instance_id=instance_id, kind="terminating", owner=owner)]
    if not steps[0]["result"]:
        return _summary(instance_id, "ignored", steps, started, False)
    if misconfigured:
        before, after = (), ()
        steps.append({"result": False, "step": "steps", "comment": misconfigured})
    for name in before:
        steps.append(_call(call, name, name, instance_id=instance_id, owner=owner))
    cleaned = all(s["result"] for s in steps)
    signal = _complete(call, instance_id, owner, "terminating", "CONTINUE")
    steps.append(signal)
    if signal["result"] and cleaned:
        for name in after:
            steps.append(_call(call, name, name, instance_id=instance_id, owner=owner))
    outcome = "CONTINUE" if signal["result"] else "CONTINUE not sent"
    return _summary(instance_id, outcome, steps, started, all(s["result"] for s in steps))


__all__ = ["LAUNCH_AFTER", "LAUNCH_BEFORE", "RETIRE_AFTER", "RETIRE_BEFORE", "check_names", "launching",
           "terminating"]
