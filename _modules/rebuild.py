"""Rebuild the instances of an AWS Auto Scaling group (Phoenix).

Thin wrapper over :mod:`phoenix.rebuild`: reads ``phoenix:aws`` and ``phoenix:rebuild`` from the
minion/master config and pillar (pillar wins, keyword arguments win over both), sends progress events
``phoenix/rebuild/<group>/<stage>`` and returns plain data.

Events: on a minion connected to a master they go through ``event.send`` (the master sees them as
``_minion_event`` from this minion); inside the master (``salt-run state.orchestrate``) they are fired
on the master event bus; under ``salt-call --local`` there is no bus and progress is logged only.
"""

from __future__ import annotations

import logging
from typing import Any

try:
    import phoenix.aws
    import phoenix.rebuild.cycle
    import phoenix.rebuild.errors
    import phoenix.rebuild.lock
    import phoenix.rebuild.options
    import phoenix.rebuild.policy
    import phoenix.rebuild.preflight
    import phoenix.rebuild.progress
    import phoenix.rebuild.status
    import phoenix.rebuild.target
    import phoenix.rebuild.trigger
    import phoenix.rebuild.watch
    import phoenix.saltglue

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - reported by __virtual__
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "rebuild"


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"rebuild: the phoenix package (and boto3) must be importable: {IMPORT_ERROR}. Sync "
                       "_utils (saltutil.sync_all) or pip install phoenix-salt")
    try:
        import boto3  # noqa: F401
    except ImportError:
        return (False, "rebuild: boto3 is not installed")
    return __virtualname__


# -- helpers: every setting is read through phoenix.saltglue (works with Salt 3008's loader context) --
def _aws(**overrides: Any) -> "phoenix.aws.AWS":
    return phoenix.saltglue.aws(__opts__, __pillar__, overrides)


def _options(**overrides: Any) -> "phoenix.rebuild.options.RebuildOptions":
    try:
        conf, pil = phoenix.saltglue.layered(__opts__, __pillar__, "phoenix:rebuild")
        return phoenix.rebuild.options.options_from(conf, pil, {k: v for k, v in overrides.items() if v is not None})
    except (phoenix.rebuild.errors.RebuildError, ValueError) as exc:
        raise SaltInvocationError(str(exc)) from None


def _defaults(stack: str | None, group: str | None) -> tuple[str | None, str | None]:
    if stack or group:
        return stack, group
    try:
        section = phoenix.saltglue.settings(__opts__, __pillar__, "phoenix:rebuild")
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None
    return section.get("stack"), section.get("group")


def _emitter():
    """How to put an event on a bus from where this runs (None: logs only)."""
    return phoenix.saltglue.emitter(__opts__, __salt__)


def _aws_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in list(kwargs) if k in phoenix.aws.SETTING_KEYS}


def _clean(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if not k.startswith("__")}


def _fail(exc: Exception) -> None:
    raise CommandExecutionError(str(exc)) from None


# -- public functions -------------------------------------------------------------------------------
def cycle(
    stack: str | None = None,
    group: str | None = None,
    strategy: str | None = None,
    test: bool | None = None,
    fix_policy: bool = False,
    deadline: Any = None,
    takeover: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """
    Replace every instance of a group: preflight, trigger, watch, summary.

    stack / group
        The CloudFormation stack or Auto Scaling group (one is enough). Default:
        ``phoenix:rebuild:stack`` / ``phoenix:rebuild:group`` from pillar.
    strategy
        ``cloudformation`` (new ``RebuildTimestamp`` -> AutoScalingRollingUpdate) or ``instance_refresh``.
    test
        Dry run: report what would happen; no mutating AWS call.
    fix_policy
        Set the recommended stack policy when preflight finds the current one too permissive.
    deadline
        Stop watching (and cancel the update) after this long, e.g. ``2h``. Default: derived from the
        group's size, batches, the LAUNCHING hook's timeout and the recorded cycles (the plan says how).
    takeover
        When another cycle's lock is found: if its update still runs, adopt it (watch it to its end and
        report it); if its update has ended, remove the lock and start a new cycle. A lock whose owner
        process is gone (same host) is adopted without it.

    Other ``phoenix:rebuild`` settings (``poll_initial``, ``poll_max``, ``min_healthy_percentage``,
    ``instance_warmup``, ``timestamp_parameter``, ``require_launch_hook``...) and ``phoenix:aws`` settings
    (``region``, ``profile``, ``endpoint_url``, ``max_attempts``) may be passed as keyword arguments.

    Returns the summary (``result``, ``replaced``, ``abandoned``, ``duration_seconds``,
    ``oldest_age_before``/``oldest_age_after``, ``comment``...). A refused cycle raises an error naming
    the problems; a failed cycle returns ``result: False`` and sets a non-zero retcode.

    CLI Example:

    .. code-block:: bash

        salt-call rebuild.cycle stack=web
        salt-call rebuild.cycle group=web-Group-1AB2 strategy=instance_refresh
        salt-call rebuild.cycle stack=web test=True
        salt-call rebuild.cycle stack=web fix_policy=True deadline=2h
        salt-call rebuild.cycle stack=web takeover=True
    """
    kwargs = _clean(kwargs)
    aws_over = _aws_kwargs(kwargs)
    if test is None:
        test = bool(__opts__.get("test", False))
    stack, group = _defaults(stack, group)
    options = _options(strategy=strategy, deadline=deadline, **kwargs)
    aws = _aws(**aws_over)
    try:
        summary = phoenix.rebuild.cycle.run_cycle(aws, options, stack=stack, group=group, dry_run=bool(test),
                                                  fix_policy=bool(fix_policy), emit=_emitter(),
                                                  takeover=bool(takeover))
    except (phoenix.rebuild.errors.RebuildError, phoenix.aws.PhoenixAWSError) as exc:
        _fail(exc)
    if summary.get("result") is False:
        __context__["retcode"] = 1
    return summary


def status(stack: str | None = None, group: str | None = None, max_age: Any = None, **kwargs: Any) -> dict[str, Any]:
    """
    Every instance of the managed group: lifecycle state, age, time left before ``max_age``, launch
    version, patch lag (security updates pending and since when, from each instance's
    ``phoenix_patches.pending`` in the mine); whether pending security updates make a cycle due early
    (``security``: lag >= ``security_threshold``, 6h, at most once per threshold); when the next cycle is due (``schedule``: ``due``, ``due_at``, the lead time and why), the
    plan (batches, expected duration, deadline), the cycle lock (owner, age, whether its update still
    runs) and the recorded cycles (``history``).

    max_age
        The promise: no instance older than this (default ``phoenix:rebuild:max_age``, 24h).

    CLI Example:

    .. code-block:: bash

        salt-call rebuild.status stack=web
        salt-call rebuild.status group=web-Group-1AB2 max_age=12h
    """
    kwargs = _clean(kwargs)
    aws = _aws(**_aws_kwargs(kwargs))
    options = _options(max_age=max_age, **kwargs)
    stack, group = _defaults(stack, group)
    try:
        target = phoenix.rebuild.target.resolve(aws, stack=stack, group=group)
        reports = _patch_reports(target) if options.security_rebuild else None
        return phoenix.rebuild.status.report(aws, target, options, patch_reports=reports)
    except (phoenix.rebuild.errors.RebuildError, phoenix.aws.PhoenixAWSError) as exc:
        _fail(exc)


def _patch_reports(target: Any) -> dict[str, Any]:
    """Each instance's ``phoenix_patches.pending`` report from the mine (filed under the minion's
    authenticated id, which is the instance id); a mine that cannot be read leaves the rows unreported."""
    ids = [i["InstanceId"] for i in target.group_data.get("Instances", [])]
    try:
        return phoenix.saltglue.mine_get(__opts__, __salt__, ids, "phoenix_patches.pending")
    except Exception as exc:  # the rebuild's age guarantee must not depend on the mine
        log.warning("rebuild.status: could not read the patch reports from the mine: %s", exc)
        return {}


def preflight(
    stack: str | None = None,
    group: str | None = None,
    strategy: str | None = None,
    fix_policy: bool = False,
    test: bool | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """
    Check whether a cycle may start, without starting one: stack stable, no cycle running, stack policy,
    LAUNCHING hook with DefaultResult ABANDON, the RebuildTimestamp parameter.

    fix_policy
        Replace a too permissive stack policy with the recommended one (the only change this function
        makes; not with ``test=True``).

    Returns ``{ok, problems: [{code, message, fix}], warnings, policy, hooks}``.

    CLI Example:

    .. code-block:: bash

        salt-call rebuild.preflight stack=web
        salt-call rebuild.preflight stack=web fix_policy=True
    """
    kwargs = _clean(kwargs)
    aws = _aws(**_aws_kwargs(kwargs))
    options = _options(strategy=strategy, **kwargs)
    if test is None:
        test = bool(__opts__.get("test", False))
    stack, group = _defaults(stack, group)
    try:
        target = phoenix.rebuild.target.resolve(aws, stack=stack, group=group)
        result = phoenix.rebuild.cycle.run_preflight(aws, target, options, fix_policy=bool(fix_policy),
                                                     dry_run=bool(test))
    except (phoenix.rebuild.errors.RebuildError, phoenix.aws.PhoenixAWSError) as exc:
        _fail(exc)
    facts = result.pop("_facts")
    result["plan"] = phoenix.rebuild.cycle.plan_for(options, target, facts, len(
        target.group_data.get("Instances", [])) or int(target.group_data.get("DesiredCapacity") or 0)).as_dict()
    return result


def unlock(stack: str | None = None, group: str | None = None, cycle_id: str | None = None, force: bool = False,
           test: bool | None = None, **kwargs: Any) -> dict[str, Any]:
    """
    Remove the cycle lock (group tag ``phoenix:rebuild:cycle``) left by a cycle that was killed.

    Refused while the lock's update (stack update or instance refresh) still runs, because another cycle
    could then start against it: wait, or adopt it with ``rebuild.cycle takeover=True``; ``force=True``
    removes it anyway.

    cycle_id
        Remove the lock only if it belongs to this cycle.
    test
        Say what would be removed; change nothing.

    Returns ``{result, removed, lock, comment}``.

    CLI Example:

    .. code-block:: bash

        salt-call rebuild.unlock stack=web
        salt-call rebuild.unlock stack=web cycle_id=20261201T093000Z-1a2b3c test=True
        salt-call rebuild.unlock group=web-Group-1AB2 force=True
    """
    kwargs = _clean(kwargs)
    aws = _aws(**_aws_kwargs(kwargs))
    options = _options(**kwargs)
    if test is None:
        test = bool(__opts__.get("test", False))
    stack, group = _defaults(stack, group)
    try:
        target = phoenix.rebuild.target.resolve(aws, stack=stack, group=group)
        facts = phoenix.rebuild.preflight.gather(aws, target)
        out = phoenix.rebuild.lock.unlock(aws, target.group, facts.lock_assessment(options), cycle_id=cycle_id,
                                          force=bool(force), test=bool(test), now=facts.now)
    except (phoenix.rebuild.errors.RebuildError, phoenix.aws.PhoenixAWSError) as exc:
        _fail(exc)
    if out["result"] is False:
        raise CommandExecutionError(out["comment"])
    return out


def recommended_policy(stack: str | None = None, group: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """
    The stack policy a rebuild needs for this stack: only the group and its launch template/configuration
    may be modified (what ``fix_policy=True`` sets).

    CLI Example:

    .. code-block:: bash

        salt-call rebuild.recommended_policy stack=web --out=json
    """
    kwargs = _clean(kwargs)
    aws = _aws(**_aws_kwargs(kwargs))
    stack, group = _defaults(stack, group)
    try:
        target = phoenix.rebuild.target.resolve(aws, stack=stack, group=group)
    except (phoenix.rebuild.errors.RebuildError, phoenix.aws.PhoenixAWSError) as exc:
        _fail(exc)
    return phoenix.rebuild.policy.recommended(target.allowed_logical_ids)


def seconds(value: Any, name: str = "duration") -> float:
    """
    A duration setting in seconds (``90``, ``"15m"``, ``"1h30m"``), or an error naming ``name``. Used by
    ``salt/rebuild/schedule.sls`` to turn ``check_interval``/``check_splay`` into the schedule's seconds.

    CLI Example:

    .. code-block:: bash

        salt-call rebuild.seconds 1h30m
        salt-call rebuild.seconds 5m name=phoenix:rebuild:check_splay
    """
    try:
        return phoenix.rebuild.options.parse_duration(value, name)
    except phoenix.rebuild.errors.RebuildError as exc:
        raise SaltInvocationError(str(exc)) from None
