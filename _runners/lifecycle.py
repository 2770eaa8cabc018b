"""Master-side steps of provisioning an Auto Scaling instance (Phoenix): what ``orch.provision`` and
``orch.retire`` call, and a view of the lifecycle ledger for people.

Nothing here trusts an event: every step re-reads the ledger (:mod:`phoenix.lifecycle.ledger`, written by
the ``lifecycle`` engine) and AWS (through :mod:`phoenix.aws`) before it acts, and works only for the one
orchestration that claimed the action (``owner``). A forged ``phoenix/lifecycle/...`` event can at most
start a check that finds nothing. A failing step records its reason in the ledger, fires
``phoenix/lifecycle/step/<id>`` and returns with a non-zero retcode (the orchestration's ``onfail`` sends
ABANDON at once).

Settings: ``phoenix:lifecycle`` and ``phoenix:aws`` in the master config (see ``pillar.example``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

try:
    import phoenix.aws
    import phoenix.lifecycle.cloud
    import phoenix.lifecycle.events
    import phoenix.lifecycle.health
    import phoenix.lifecycle.highstate
    import phoenix.lifecycle.ledger
    import phoenix.lifecycle.messages
    import phoenix.lifecycle.options
    import phoenix.lifecycle.signal
    import phoenix.lifecycle.steps
    import phoenix.saltglue

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - reported by __virtual__
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

from salt.exceptions import SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "lifecycle"

WAIT_STATES = {"launching": "Pending:Wait", "terminating": "Terminating:Wait"}


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"lifecycle runner: the phoenix package (and boto3) must be importable: {IMPORT_ERROR}")
    return __virtualname__


# -- glue ------------------------------------------------------------------------------------------
def _options() -> "phoenix.lifecycle.options.LifecycleOptions":
    try:
        section = phoenix.saltglue.settings(__opts__, globals().get("__pillar__"), "phoenix:lifecycle")
        return phoenix.lifecycle.options.options_from(section, __opts__.get("cachedir"))
    except ValueError as exc:
        raise phoenix.saltglue.salt_error(exc) from None


def _ledger() -> "phoenix.lifecycle.ledger.Ledger":
    return phoenix.lifecycle.ledger.Ledger(_options().ledger)


def _aws() -> "phoenix.aws.AWS":
    return phoenix.saltglue.aws(__opts__, globals().get("__pillar__"))


def _emit(tag: str, data: dict[str, Any]) -> bool:
    return phoenix.saltglue.fire(phoenix.saltglue.emitter(__opts__), tag, data, log)


def _instance(instance_id: Any) -> str:
    try:
        return phoenix.lifecycle.messages.require_instance_id(instance_id)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None


def _transition(kind: str) -> str:
    try:
        return phoenix.lifecycle.messages.transition_of(kind)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None


def _fail(instance_id: str, step: str, reason: str, ledger: Any = None, token: str | None = None,
          started: float | None = None, **extra: Any) -> dict[str, Any]:
    """A failed step: reason in the ledger (when the action is ours), an event, a log line, retcode 1."""
    __context__["retcode"] = 1
    return phoenix.lifecycle.steps.failed(phoenix.saltglue.emitter(__opts__), log, instance_id, step, reason,
                                          started, ledger, token, **extra)


def _done(instance_id: str, step: str, comment: str, started: float, **extra: Any) -> dict[str, Any]:
    return phoenix.lifecycle.steps.done(phoenix.saltglue.emitter(__opts__), log, instance_id, step, comment, started,
                                        **extra)


def _owned(instance_id: str, kind: str, owner: str, step: str, started: float):
    """``(ledger, action, None)`` when ``owner`` holds the in-flight action, else ``(ledger, None, failure)``."""
    ledger = _ledger()
    action, why_not = phoenix.lifecycle.steps.ownership(ledger, instance_id, _transition(kind), owner)
    return ledger, action, (_fail(instance_id, step, why_not, started=started) if why_not else None)


def _keys():
    import salt.key

    return salt.key.get_key(__opts__)


def _key_state(instance_id: str) -> str | None:
    entry = _keys().cache.fetch("keys", instance_id) or {}
    return entry.get("state")


# -- steps -----------------------------------------------------------------------------------------
def claim(instance_id: str, kind: str = "launching", owner: str | None = None) -> dict[str, Any]:
    """Check that ledger and AWS agree an action is waiting for us, and make ``owner`` its one orchestration.

    Fails (and fires ``phoenix/lifecycle/ignored/<id>``, nothing else happens) when the ledger has no
    in-flight action for the instance, AWS does not hold it in ``Pending:Wait`` / ``Terminating:Wait`` in
    the action's group, or another orchestration already claimed it.

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.claim i-0123456789abcdef0 kind=launching owner=ops-manual
    """
    started = time.monotonic()
    instance_id = _instance(instance_id)
    transition = _transition(kind)
    kind = phoenix.lifecycle.messages.kind_of(transition)
    if not owner:
        raise SaltInvocationError("owner is required: a name unique to this orchestration run")
    ledger = _ledger()

    def ignored(reason: str) -> dict[str, Any]:
        ledger.note(instance_id, "ignored", f"{kind}: {reason}")
        _emit(phoenix.lifecycle.events.tag("ignored", instance_id), {"instance_id": instance_id, "kind": kind,
                                                                    "reason": reason})
        return _fail(instance_id, "claim", reason, started=started)

    action = ledger.in_flight(instance_id, transition)
    if action is None:
        latest = ledger.latest(instance_id, transition)
        return ignored(f"no in-flight {kind} action in the ledger (latest: {latest.state if latest else 'none'})")
    state, group = phoenix.lifecycle.cloud.instance_state(_aws(), instance_id)
    if state != WAIT_STATES[kind] or group != action.group:
        reason = f"AWS says {state or 'unknown'} in group {group!r}, expected {WAIT_STATES[kind]} in {action.group!r}"
        if state is None or group == action.group:
            # AWS is the source of truth: the action is no longer open there (terminated, completed)
            ledger.finish(action.token, phoenix.lifecycle.ledger.GONE, reason,
                          from_states=(phoenix.lifecycle.ledger.IN_FLIGHT,))
        return ignored(reason)
    if not ledger.claim(action.token, owner):
        return ignored("another orchestration is already working on this action")
    return _done(instance_id, "claim", f"{kind} action in {action.group} claimed", started, group=action.group)


def wait_minion(instance_id: str, owner: str, timeout: float | None = None) -> dict[str, Any]:
    """Wait until the instance's key is accepted (by the engine's key review) and its minion answers.

    A minion whose key was just accepted connects at its next authentication try, and a ping published
    before that is never seen. So the ping is published without waiting for it (its return is read from
    the job cache) and published again every 1.5 s, or at once when the minion's
    ``salt/minion/<id>/start`` shows it connected (``LocalClient.cmd`` waited its ``gather_job_timeout``
    after a missed ping: 13 s).

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.wait_minion i-0123456789abcdef0 owner=ops-manual timeout=120
    """
    import salt.client
    import salt.utils.event

    started = time.monotonic()
    instance_id = _instance(instance_id)
    ledger, action, failure = _owned(instance_id, "launching", owner, "minion", started)
    if failure:
        return failure
    limit = float(timeout if timeout is not None else _options().key_timeout)
    start_tag = f"salt/minion/{instance_id}/start"
    accepted_after = None
    with salt.client.get_local_client(__opts__["conf_file"]) as client, \
            salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True) as bus:
        while time.monotonic() - started < limit:
            if ledger.in_flight(instance_id) is None:
                return _fail(instance_id, "minion", "the lifecycle action ended while waiting", started=started)
            if _key_state(instance_id) != "accepted":
                time.sleep(0.2)
                continue
            if accepted_after is None:
                accepted_after = round(time.monotonic() - started, 3)
            jid = client.cmd_async(instance_id, "test.ping")
            republish = time.monotonic() + 1.5
            while jid and time.monotonic() < republish:
                got = client.get_cache_returns(jid).get(instance_id)
                if got is not None and got.get("ret") is True:
                    return _done(instance_id, "minion", "key accepted, minion answers", started,
                                 key_seconds=accepted_after)
                if bus.get_event(wait=0.1, tag=start_tag, match_type="startswith"):
                    break  # it connected after this publish: ping again now
            if not jid:
                time.sleep(0.5)
    state = _key_state(instance_id) or "absent"
    refusals = [n["detail"] for n in ledger.notes(instance_id, "key_refused")]
    why = f" (last refusal: {refusals[-1]})" if refusals else ""
    return _fail(instance_id, "minion", f"no answering minion within {limit:.0f}s: key {state}{why}", ledger,
                 action.token, started)


def highstate(instance_id: str, owner: str, timeout: float | None = None) -> dict[str, Any]:
    """Apply the instance's highstate (``failhard``: stop at the first failed state; ``queue``: wait for a
    run in progress) and report the first failure.

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.highstate i-0123456789abcdef0 owner=ops-manual
    """
    import salt.client

    started = time.monotonic()
    instance_id = _instance(instance_id)
    ledger, action, failure = _owned(instance_id, "launching", owner, "highstate", started)
    if failure:
        return failure
    limit = float(timeout if timeout is not None else _options().highstate_timeout)
    result = None
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        # published once, then the job cache is read until the minion returns or the deadline passes (not
        # LocalClient.cmd: its find_job probes give up on a busy or reconnecting minion after seconds)
        jid = client.cmd_async(instance_id, "state.highstate", kwarg={"failhard": True, "queue": True})
        if not jid:
            return _fail(instance_id, "highstate", "the highstate job could not be published", ledger,
                         action.token, started)
        while time.monotonic() - started < limit:
            got = client.get_cache_returns(jid).get(instance_id)
            if got is not None:
                result = got.get("ret")
                break
            if ledger.in_flight(instance_id) is None:
                return _fail(instance_id, "highstate", "the lifecycle action ended during the highstate",
                             started=started)
            time.sleep(0.25)  # a read of the master's job cache (local files)
    if result is None:
        return _fail(instance_id, "highstate", f"no highstate return within {limit:.0f}s (job {jid})", ledger,
                     action.token, started)
    problem = phoenix.lifecycle.highstate.first_failure(result)
    states_seconds = round(phoenix.lifecycle.highstate.duration(result), 3)
    if problem:
        return _fail(instance_id, "highstate", problem, ledger, action.token, started, states_seconds=states_seconds)
    count = sum(1 for v in result.values() if isinstance(v, dict))
    return _done(instance_id, "highstate", f"{count} states succeeded", started, states_seconds=states_seconds)


def health_check(instance_id: str, owner: str, timeout: float | None = None) -> dict[str, Any]:
    """HTTP from the master through the instance's NGINX (address from AWS): the health route answers 200,
    ``/console`` and a ``__debugger__`` request answer 404.

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.health_check i-0123456789abcdef0 owner=ops-manual
    """
    started = time.monotonic()
    instance_id = _instance(instance_id)
    ledger, action, failure = _owned(instance_id, "launching", owner, "health", started)
    if failure:
        return failure
    options = _options()
    address = phoenix.lifecycle.cloud.private_ip(_aws(), instance_id)
    if not address:
        return _fail(instance_id, "health", "AWS reports no private IP address", ledger, action.token, started)
    limit = float(timeout if timeout is not None else options.health_timeout)
    checked = phoenix.lifecycle.health.check(address, options.health, limit)
    if not checked.ok:
        return _fail(instance_id, "health", checked.reason, ledger, action.token, started, answers=checked.answers)
    return _done(instance_id, "health", checked.reason, started, address=address, answers=checked.answers)


def complete(instance_id: str, result: str, kind: str = "launching", owner: str | None = None,
             reason: str | None = None) -> dict[str, Any]:
    """CONTINUE or ABANDON the instance's in-flight action, exactly once (the ledger decides who sends it).

    With ``owner`` only the orchestration holding the claim may complete; ABANDON reports the reason the
    failing step recorded (or ``reason``).

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.complete i-0123456789abcdef0 ABANDON reason="taken out by hand"
    """
    started = time.monotonic()
    instance_id = _instance(instance_id)
    transition = _transition(kind)
    result = str(result).upper()
    if result not in phoenix.lifecycle.signal.RESULTS:
        raise SaltInvocationError(f"result must be CONTINUE or ABANDON, got {result!r}")
    ledger = _ledger()
    action = ledger.in_flight(instance_id, transition)
    if action is not None and owner is not None and action.claimed_by != owner:
        return _fail(instance_id, "signal", "this orchestration does not hold the action's claim", started=started)
    if result == "ABANDON" and action is not None and not reason:
        reason = action.reason or "a provisioning step failed (see the orchestration's return)"
    out = phoenix.lifecycle.signal.complete(_aws(), ledger, instance_id, transition, result, reason, _emit)
    if not out.get("sent"):
        return _fail(instance_id, "signal", out.get("reason") or "not sent", started=started, state=out.get("state"))
    return _done(instance_id, "signal", f"{result} sent", started, signal=result, reason=out.get("reason"))


def retire(instance_id: str, owner: str) -> dict[str, Any]:
    """A terminating instance: delete its minion key and flush its minion data cache.

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.retire i-0123456789abcdef0 owner=ops-manual
    """
    import salt.cache

    started = time.monotonic()
    instance_id = _instance(instance_id)
    ledger, action, failure = _owned(instance_id, "terminating", owner, "retire", started)
    if failure:
        return failure
    keys = _keys()
    had = _key_state(instance_id)
    keys.delete_key(match_dict={bucket: [instance_id] for bucket in ("minions", "minions_pre", "minions_rejected",
                                                                      "minions_denied")})
    salt.cache.Cache(__opts__).flush(f"minions/{instance_id}")
    ledger.note(instance_id, "retired", f"key ({had or 'none'}) deleted, minion data cache flushed",
                token=action.token)
    _emit(phoenix.lifecycle.events.tag("retired", instance_id), {"instance_id": instance_id, "key": had})
    return _done(instance_id, "retire", f"key ({had or 'none'}) deleted, minion data cache flushed", started)


def warmup() -> dict[str, Any]:
    """Load, in this process, what a provisioning orchestration needs: Salt's orchestration and runner
    machinery, Phoenix's modules, the ledger, boto3 and its Auto Scaling and EC2 clients. Calls no AWS API
    and touches no instance.

    The ``lifecycle`` engine fires ``phoenix/lifecycle/warmup`` when it starts, and the reactor runs
    ``orch.warmup`` (this function) for it, in the reactor's process, where every ``orch.provision`` runs.
    Without it the first launches after a master start each paid several seconds of module loading and
    imports, all at once (``bench/provision.py``: reactor + orchestration start). A forged warmup event
    costs one such no-op orchestration.

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.warmup
    """
    import salt.client

    started = time.monotonic()
    _ledger()
    aws = _aws()
    for service in ("autoscaling", "ec2"):
        aws.client(service)
    import phoenix.provision.inventory  # noqa: F401 - what the provision runner imports
    import phoenix.provision.profile  # noqa: F401

    _keys()
    with salt.client.get_local_client(__opts__["conf_file"]):
        pass
    seconds = round(time.monotonic() - started, 3)
    log.info("lifecycle: warmed up in %.1fs", seconds)
    _emit(phoenix.lifecycle.events.tag("warmed"), {"seconds": seconds})
    return {"result": True, "comment": "orchestration modules, ledger and AWS clients loaded", "seconds": seconds}


# -- for people ------------------------------------------------------------------------------------
def status(instance_id: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
    """The ledger's actions (newest last), optionally for one instance or one state, with their journal.

    CLI Example:

    .. code-block:: bash

        salt-run lifecycle.status
        salt-run lifecycle.status i-0123456789abcdef0
        salt-run lifecycle.status state=in_flight
    """
    if instance_id is not None:
        instance_id = _instance(instance_id)
    ledger = _ledger()
    rows = []
    for action in ledger.actions(state=state, instance_id=instance_id):
        row = {k: v for k, v in action.as_dict().items() if k not in ("metadata", "claimed_by", "claimed_at")}
        row["notes"] = [f"{n['kind']}: {n['detail']}" for n in ledger.notes(action.instance_id)
                        if n["token"] in (None, action.token)]
        rows.append(row)
    return rows
