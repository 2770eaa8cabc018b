"""Provisioning steps of part 2 (Phoenix): what ``orch.provision`` and ``orch.retire`` call besides the
``lifecycle`` runner's steps.

``launching`` and ``terminating`` run a whole action's steps in this one runner, in the order and with the
failure rules of :mod:`phoenix.lifecycle.sequence` (``orch.provision`` and ``orch.retire`` call them).

Each step works like a ``lifecycle`` step: it re-reads the ledger (only the orchestration holding the
action's claim, ``owner``, may run it), talks to AWS only through :mod:`phoenix.aws`, records a failure's
reason in the ledger, fires ``phoenix/lifecycle/step/<id>`` and returns a non-zero retcode so the
orchestration ABANDONs at once.

* ``reboot_if_required``  the highstate's OS updates left a reboot-required flag: EC2 ``RebootInstances``,
                          then wait for the minion's ``salt/minion/<id>/start`` and a ping
* ``swap_profile``        launch -> runtime instance profile, verified, launch sessions revoked
* ``close_secrets``       after CONTINUE: the minion refreshes its pillar, so it drops the values it held
* ``refresh_inventory``   the group's salt-ssh roster and known_hosts (launch and termination)
* ``forget``              on termination: the revocation policies of the instance

Settings (master config): ``phoenix:profile`` (``runtime``, ``revoke``, ``margin_seconds``,
``verify_timeout``), ``phoenix:os_updates:reboot_timeout``, ``phoenix:inventory``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

try:
    import phoenix.aws
    import phoenix.lifecycle.ledger
    import phoenix.lifecycle.messages
    import phoenix.lifecycle.options
    import phoenix.lifecycle.sequence
    import phoenix.lifecycle.steps
    import phoenix.provision.inventory as _inv
    import phoenix.provision.profile as _profile
    import phoenix.saltglue
    from phoenix.provision.errors import ProvisionError

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

from salt.exceptions import SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "provision"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"provision runner: the phoenix package must be importable: {IMPORT_ERROR}")
    return __virtualname__


# -- glue (the same contract as the lifecycle runner's steps) ---------------------------------------
def _ledger() -> "phoenix.lifecycle.ledger.Ledger":
    section = phoenix.saltglue.settings(__opts__, None, "phoenix:lifecycle")
    return phoenix.lifecycle.ledger.Ledger(phoenix.lifecycle.options.options_from(section, __opts__.get("cachedir")).ledger)


def _conf(path: str) -> dict[str, Any]:
    return phoenix.saltglue.settings(__opts__, None, path)


def _instance(instance_id: Any) -> str:
    try:
        return phoenix.lifecycle.messages.require_instance_id(instance_id)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None


def _fail(instance_id: str, step: str, reason: str, started: float, ledger: Any = None, token: str | None = None,
          **extra: Any) -> dict[str, Any]:
    __context__["retcode"] = 1
    return phoenix.lifecycle.steps.failed(phoenix.saltglue.emitter(__opts__), log, instance_id, step, reason,
                                          started, ledger, token, **extra)


def _done(instance_id: str, step: str, comment: str, started: float, **extra: Any) -> dict[str, Any]:
    return phoenix.lifecycle.steps.done(phoenix.saltglue.emitter(__opts__), log, instance_id, step, comment, started,
                                        **extra)


def _owned(instance_id: str, owner: str, step: str, started: float):
    ledger = _ledger()
    action, why_not = phoenix.lifecycle.steps.ownership(ledger, instance_id, LAUNCHING, owner)
    return ledger, action, (_fail(instance_id, step, why_not, started) if why_not else None)


# -- whole actions -----------------------------------------------------------------------------------
def _call(name: str, **kwargs: Any) -> Any:
    """Run the runner function ``name`` in this process (``__salt__`` is the runner loader here); ``owner``
    only for a function that takes it."""
    import salt.utils.args

    function = __salt__[name]
    if "owner" in kwargs and "owner" not in salt.utils.args.get_function_argspec(function).args:
        kwargs.pop("owner")
    return function(**kwargs)


def _run(kind: str, instance_id: Any, owner: str | None, before: Any, after: Any) -> dict[str, Any]:
    """One whole action (``launching`` or ``terminating``) through :mod:`phoenix.lifecycle.sequence`, with the
    step lists checked first: a name that is not a loaded runner function makes the sequence end the action
    right after its claim (a launch ABANDONs) instead of raising."""
    import secrets

    instance_id = _instance(instance_id)
    sequence = phoenix.lifecycle.sequence
    defaults = {"launching": (sequence.LAUNCH_BEFORE, sequence.LAUNCH_AFTER),
                "terminating": (sequence.RETIRE_BEFORE, sequence.RETIRE_AFTER)}[kind]
    known = __salt__.__contains__
    problem = None
    try:
        before = sequence.check_names(defaults[0] if before is None else before, known, "before")
        after = sequence.check_names(defaults[1] if after is None else after, known, "after")
    except ValueError as exc:
        before, after, problem = (), (), str(exc)
    owner = str(owner) if owner else f"orch-{secrets.token_hex(12)}"
    out = getattr(sequence, kind)(_call, instance_id, owner, before, after, problem)
    (log.info if out["result"] else log.warning)("%s %s: %s", kind, instance_id, out["comment"])
    if not out["result"]:
        __context__["retcode"] = 1
    return out


def launching(instance_id: str, owner: str | None = None, before: list[str] | None = None,
              after: list[str] | None = None) -> dict[str, Any]:
    """
    Provision a new instance held in ``Pending:Wait``, all in this runner: ``lifecycle.claim``, then each
    step of ``before`` (default: ``lifecycle.wait_minion``, ``lifecycle.highstate``,
    ``provision.reboot_if_required``, ``lifecycle.health_check``, ``provision.swap_profile``), then
    ``CONTINUE``, then each of ``after`` (``provision.close_secrets``, ``provision.refresh_inventory``).
    The first step that fails (or raises) sends ``ABANDON`` at once with its reason; a failed claim sends
    nothing (a forged or repeated trigger). Each step fires ``phoenix/lifecycle/step/<id>``.

    A site's own step is a runner function taking ``instance_id`` (and ``owner``, to check the claim with
    the ledger), returning a dict with a boolean ``result`` and a ``comment``: list it in ``before``.
    ``orch.provision`` is this function's one state.

    CLI Example:

    .. code-block:: bash

        salt-run provision.launching i-0123456789abcdef0
        salt-run provision.launching i-0123456789abcdef0 before='[lifecycle.wait_minion, lifecycle.highstate, lifecycle.health_check]'
    """
    return _run("launching", instance_id, owner, before, after)


def terminating(instance_id: str, owner: str | None = None, before: list[str] | None = None,
                after: list[str] | None = None) -> dict[str, Any]:
    """
    Retire an instance held in ``Terminating:Wait``, all in this runner: ``lifecycle.claim``, then each of
    ``before`` (default: ``lifecycle.retire``: delete the key, flush its minion data cache;
    ``provision.forget``: its revocation policies), then ``CONTINUE`` (sent even when a clean-up step
    failed: the instance goes either way), then ``after`` (``provision.refresh_inventory``).

    CLI Example:

    .. code-block:: bash

        salt-run provision.terminating i-0123456789abcdef0
    """
    return _run("terminating", instance_id, owner, before, after)


# -- steps -------------------------------------------------------------------------------------------
def reboot_if_required(instance_id: str, owner: str, timeout: float | None = None) -> dict[str, Any]:
    """
    Reboot the instance when its OS updates say so (EC2 ``RebootInstances``) and wait until its minion is
    back (``salt/minion/<id>/start``, then a ping); nothing when no reboot is required.

    CLI Example:

    .. code-block:: bash

        salt-run provision.reboot_if_required i-0123456789abcdef0 owner=ops-manual
    """
    import salt.client
    import salt.utils.event

    started = time.monotonic()
    instance_id = _instance(instance_id)
    ledger, action, failure = _owned(instance_id, owner, "reboot", started)
    if failure:
        return failure
    limit = float(timeout if timeout is not None else _conf("phoenix:os_updates").get("reboot_timeout", 600))
    try:
        with salt.client.get_local_client(__opts__["conf_file"]) as client:
            answer = client.cmd(instance_id, "os_updates.reboot_required", timeout=60).get(instance_id)
    except Exception as exc:  # noqa: BLE001 - the reason goes to the ledger and the ABANDON
        answer = f"{type(exc).__name__}: {exc}"
    if not isinstance(answer, dict):
        return _fail(instance_id, "reboot", f"the minion could not say whether a reboot is required: {answer}",
                     started, ledger, action.token)
    if not answer.get("required"):
        return _done(instance_id, "reboot", "no reboot required", started, rebooted=False)
    aws = phoenix.saltglue.aws(__opts__, None)
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True) as bus:
        try:
            aws.call("ec2", "reboot_instances", instance_id, InstanceIds=[instance_id])
        except phoenix.aws.PhoenixAWSError as exc:
            return _fail(instance_id, "reboot", f"RebootInstances failed: {exc}", started, ledger, action.token)
        deadline = time.monotonic() + limit
        back = None
        while back is None and time.monotonic() < deadline:
            back = bus.get_event(wait=min(5.0, max(0.1, deadline - time.monotonic())),
                                 tag=f"salt/minion/{instance_id}/start", match_type="startswith")
    if back is None:
        return _fail(instance_id, "reboot", f"the minion did not come back within {limit:.0f}s of the reboot",
                     started, ledger, action.token)
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        for _ in range(30):
            if client.cmd(instance_id, "test.ping", timeout=10).get(instance_id) is True:
                return _done(instance_id, "reboot", f"rebooted for {', '.join(answer.get('packages') or ['updates'])}",
                             started, rebooted=True, packages=answer.get("packages") or [])
            time.sleep(1)
    return _fail(instance_id, "reboot", "the minion started again but does not answer", started, ledger, action.token)


def swap_profile(instance_id: str, owner: str) -> dict[str, Any]:
    """
    Swap the launch instance profile for the runtime one (``phoenix:profile:runtime``), verify it, and deny
    the launch role's earlier sessions of the instance. Skipped (with a warning) when no runtime profile
    is configured.

    CLI Example:

    .. code-block:: bash

        salt-run provision.swap_profile i-0123456789abcdef0 owner=ops-manual
    """
    started = time.monotonic()
    instance_id = _instance(instance_id)
    ledger, action, failure = _owned(instance_id, owner, "profile", started)
    if failure:
        return failure
    conf = _conf("phoenix:profile")
    if not conf.get("runtime"):
        log.warning("provision: phoenix:profile:runtime is not set: %s keeps its launch instance profile", instance_id)
        return _done(instance_id, "profile", "skipped: phoenix:profile:runtime is not set", started, swapped=False)
    try:
        out = _profile.swap(phoenix.saltglue.aws(__opts__, None), instance_id, conf["runtime"],
                            revoke=str(conf.get("revoke", True)).lower() not in ("false", "0", "no", "off"),
                            verify_timeout=float(conf.get("verify_timeout", 30)),
                            margin_seconds=float(conf.get("margin_seconds", 60)))
    except (ProvisionError, phoenix.aws.PhoenixAWSError) as exc:
        return _fail(instance_id, "profile", str(exc), started, ledger, action.token)
    return _done(instance_id, "profile", f"now on {out['runtime_profile']}", started, swapped=True,
                 **{k: out[k] for k in ("launch_profile", "runtime_profile", "revoked_roles", "revoked_before",
                                        "swapped_at")})


def close_secrets(instance_id: str) -> dict[str, Any]:
    """
    After CONTINUE: make the minion refresh its pillar (the window is closed, so the phoenix_secrets values
    are gone from it) and check that none is left in its in-memory pillar.

    CLI Example:

    .. code-block:: bash

        salt-run provision.close_secrets i-0123456789abcdef0
    """
    import salt.client

    started = time.monotonic()
    instance_id = _instance(instance_id)
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        client.cmd(instance_id, "saltutil.refresh_pillar", kwarg={"wait": True}, timeout=60)
        # a name list, never the values: .keys() of what is left
        left = client.cmd(instance_id, "pillar.keys", ["phoenix:secrets:values"], timeout=60).get(instance_id)
    if isinstance(left, list) and left:
        return _fail(instance_id, "secrets", f"the minion still holds secrets after CONTINUE: {', '.join(left)}", started)
    return _done(instance_id, "secrets", "the minion's pillar holds no secret values", started)


def refresh_inventory(instance_id: str) -> dict[str, Any]:
    """
    Refresh the roster and known_hosts of the instance's group (from the ledger), e.g. after it launched
    or while it terminates. Skipped when ``phoenix:inventory:dir`` is not set.

    CLI Example:

    .. code-block:: bash

        salt-run provision.refresh_inventory i-0123456789abcdef0
    """
    started = time.monotonic()
    instance_id = _instance(instance_id)
    conf = _conf("phoenix:inventory")
    if not conf.get("dir"):
        return _done(instance_id, "inventory", "skipped: phoenix:inventory:dir is not set", started)
    action = _ledger().latest(instance_id)
    if action is None:
        return _fail(instance_id, "inventory", "the ledger does not know the instance's group", started)
    import salt.client

    try:
        live = _inv.members(phoenix.saltglue.aws(__opts__, None), action.group)
        with salt.client.get_local_client(__opts__["conf_file"]) as client:
            ret = client.cmd(sorted(live), "inventory.host_keys", tgt_type="list",
                             timeout=float(conf.get("timeout", 10))) if live else {}
        reported = {mid: keys for mid, keys in (ret or {}).items() if mid in live and isinstance(keys, list)}
        out = _inv.refresh(action.group, live, reported, conf["dir"], user=str(conf.get("user", "root")),
                           port=int(conf.get("port", 22)), extra=conf.get("roster_extra"))
    except (ProvisionError, phoenix.aws.PhoenixAWSError) as exc:
        return _fail(instance_id, "inventory", str(exc), started)
    return _done(instance_id, "inventory", f"{len(out['hosts'])} host(s) in {action.group}", started,
                 group=action.group, added=out["added"], removed=out["removed"])


def forget(instance_id: str) -> dict[str, Any]:
    """
    On termination: remove the instance's launch-session revocation policies.

    CLI Example:

    .. code-block:: bash

        salt-run provision.forget i-0123456789abcdef0
    """
    started = time.monotonic()
    instance_id = _instance(instance_id)
    if not _conf("phoenix:profile").get("runtime"):
        return _done(instance_id, "forget", "skipped: phoenix:profile:runtime is not set", started)
    try:
        removed = _profile.forget(phoenix.saltglue.aws(__opts__, None), instance_id)
    except (ProvisionError, phoenix.aws.PhoenixAWSError) as exc:
        return _fail(instance_id, "forget", str(exc), started)
    return _done(instance_id, "forget", f"revocation policy removed from {len(removed)} role(s)", started,
                 roles=removed)
