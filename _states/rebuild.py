"""Keep an Auto Scaling group fresh: rebuild it once its oldest instance is older than ``max_age``.

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
    Ensure no instance of the group is older than ``max_age`` (default ``phoenix:rebuild:max_age``, 24h).

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
    status_kwargs = {k: v for k, v in kwargs.items() if k in aws_keys}
    try:
        current = __salt__["rebuild.status"](stack=stack, group=group, max_age=max_age, **status_kwargs)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Could not read the state of {name}: {exc}"
        return ret
    old = [r["instance_id"] for r in current["instances"] if r["past_max_age"]]
    limit = current["max_age_seconds"]
    if not old and not force:
        ret["result"] = True
        ret["comment"] = (f"All {current['count']} instance(s) of {current['group']} are younger than "
                          f"{_fmt(limit)} (oldest {_fmt(current['oldest_age_seconds'])}); nothing to do.")
        return ret
    why = (f"{len(old)} of {current['count']} instance(s) of {current['group']} are older than {_fmt(limit)}"
           if old else f"a rebuild of {current['group']} was forced")
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
                                              "oldest_age_before", "oldest_age_after", "duration_seconds")
                      if summary.get(k)}
    ret["result"] = bool(summary["result"])
    ret["comment"] = f"{why}. {summary['comment']}"
    return ret


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
