"""Keep an Auto Scaling group fresh: no instance older than ``max_age``, ever.

Run it often (``salt/rebuild/schedule.sls`` applies it every ``phoenix:rebuild:check_interval``, 1 h): it
starts a cycle when the oldest instance would pass ``max_age`` before a cycle started at the next check
could finish (``rebuild.status`` shows the lead time and when the next cycle is due).

.. code-block:: yaml

    web-fleet-fresh:
      rebuild.fresh:
        - stack: web
        - max_age: 24h
        - strategy: cloudformation

The work is done by the ``rebuild`` execution module; this state only decides, honours ``test=True``
and returns the Salt ret dict.
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "rebuild"

try:
    from phoenix.aws import SETTING_KEYS as _AWS_KEYS
except ImportError:  # pragma: no cover - __virtual__ of the execution module reports it
    _AWS_KEYS = ()


def __virtual__():
    if "rebuild.cycle" in __salt__:
        return __virtualname__
    return (False, "rebuild state: the rebuild execution module is not available")


def fresh(
    name: str,
    stack: str | None = None,
    group: str | None = None,
    max_age: Any = None,
    strategy: str | None = None,
    force: bool = False,
    fix_policy: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """
    Ensure no instance of the group ever gets older than ``max_age`` (default ``phoenix:rebuild:max_age``,
    24h): start a cycle when the oldest instance's age plus the lead time (check interval + splay +
    expected cycle + margin) reaches ``max_age``.

    name
        The stack name, unless ``stack`` or ``group`` is given (then just a label).
    max_age
        e.g. ``24h``, ``90m``, ``86400``.
    strategy
        ``cloudformation`` or ``instance_refresh`` (default ``phoenix:rebuild:strategy``).
    force
        Run a cycle even when every instance is young enough.
    fix_policy
        Let the cycle set the recommended stack policy when the current one is too permissive.

    Extra keyword arguments go to ``rebuild.cycle`` (``deadline``, ``poll_max``, ``endpoint_url``...).
    """
    ret: dict[str, Any] = {"name": name, "result": False, "changes": {}, "comment": ""}
    if not stack and not group:
        stack = name
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    aws_keys = set(_AWS_KEYS)
    status_kwargs = {k: v for k, v in kwargs.items() if k in aws_keys or k in _SCHEDULE_KEYS}
    try:
        current = __salt__["rebuild.status"](stack=stack, group=group, max_age=max_age, strategy=strategy,
                                             **status_kwargs)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Could not read the state of {name}: {exc}"
        return ret
    old = [r["instance_id"] for r in current["instances"] if r["past_max_age"]]
    limit = current["max_age_seconds"]
    due = current.get("schedule") or {}
    security = current.get("security") or {}
    if not old and not due.get("due") and not security.get("due") and not force:
        ret["result"] = True
        ret["comment"] = (f"All {current['count']} instance(s) of {current['group']} are younger than "
                          f"{_fmt(limit)} (oldest {_fmt(current['oldest_age_seconds'])}); next cycle due "
                          f"{due.get('due_at') or '-'} ({due.get('reason', '')}); "
                          + (f"security updates: {security['reason']}; " if security.get("reason") else "")
                          + "nothing to do.")
        return ret
    if old:
        why = f"{len(old)} of {current['count']} instance(s) of {current['group']} are older than {_fmt(limit)}"
    elif due.get("due"):
        why = f"a cycle of {current['group']} is due: {due.get('reason')}"
    elif security.get("due"):
        why = f"an early cycle of {current['group']} is due for security updates: {security['reason']}"
    else:
        why = f"a rebuild of {current['group']} was forced"
    try:
        summary = __salt__["rebuild.cycle"](stack=stack, group=group, strategy=strategy, fix_policy=fix_policy,
                                            test=bool(__opts__.get("test")), **kwargs)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"{why}, but the rebuild was refused: {exc}"
        return ret
    if summary.get("dry_run"):
        ret["result"] = None
        ret["changes"] = {"would_replace": summary["would_replace"], "strategy": summary["strategy"]}
        if summary.get("would_fix_policy"):
            ret["changes"]["would_fix_policy"] = summary["would_fix_policy"]
        ret["comment"] = f"{why}. {summary['comment']}"
        return ret
    ret["changes"] = {k: summary[k] for k in ("replaced_instances", "new_instances", "abandoned_instances",
                                              "oldest_age_before", "oldest_age_after", "duration_seconds",
                                              "adopted_cycle", "interrupted_cycle", "kept_capacity",
                                              "capacity_restored")
                      if summary.get(k)}
    ret["result"] = bool(summary["result"])
    ret["comment"] = f"{why}. {summary['comment']}"
    return ret


#: settings that change when a cycle is due, passed to rebuild.status as well as to the cycle
_SCHEDULE_KEYS = ("check_interval", "check_splay", "margin", "batch_estimate", "min_healthy_percentage",
                  "timestamp_parameter", "instance_warmup", "security_threshold", "security_rebuild")


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
