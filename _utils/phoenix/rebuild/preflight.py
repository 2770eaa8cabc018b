"""Preflight: gather facts about the target (read-only calls), then decide (pure) whether a cycle may start.

Checks, each a problem with a ``code``, a ``message`` and a ``fix``:

* ``stack_not_stable``   the stack is not in a ``*_COMPLETE`` state (or is in a rollback/failed state)
* ``cycle_in_progress``  a stack update, an instance refresh or another Phoenix cycle (lock tag) is running
* ``stack_policy``       the stack policy lets an update change more than the group and its launch resources
                         (or forbids changing them); fixable with ``fix_policy=True``
* ``no_launch_hook``     no LAUNCHING lifecycle hook with ``DefaultResult: ABANDON`` on the group
* ``missing_parameter``  the stack has no ``RebuildTimestamp`` parameter (cloudformation strategy)
* ``no_stack``           the cloudformation strategy was asked for a group no stack manages
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.rebuild import policy as policy_mod
from phoenix.rebuild.options import RebuildOptions
from phoenix.rebuild.target import Target

LOCK_TAG = "phoenix:rebuild:cycle"
STABLE_STATES = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                 "IMPORT_ROLLBACK_COMPLETE")
ACTIVE_REFRESH = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")


@dataclass
class Facts:
    """Everything preflight looks at, as plain data."""

    target: Target
    hooks: list[dict[str, Any]] = field(default_factory=list)
    refreshes: list[dict[str, Any]] | None = None  # None: the endpoint could not tell
    refresh_error: str | None = None
    policy_body: str | None = None
    lock: str | None = None
    now: datetime | None = None


def gather(aws: AWS, target: Target) -> Facts:
    """Read-only calls: lifecycle hooks, instance refreshes, stack policy, lock tag."""
    facts = Facts(target=target)
    res = f"group {target.group}"
    facts.hooks = aws.call("autoscaling", "describe_lifecycle_hooks", res,
                           AutoScalingGroupName=target.group).get("LifecycleHooks", [])
    try:
        facts.refreshes = aws.call("autoscaling", "describe_instance_refreshes", res,
                                   AutoScalingGroupName=target.group, MaxRecords=5).get("InstanceRefreshes", [])
    except PhoenixAWSError as exc:
        if exc.code not in ("BadResponse", "InternalFailure", "NotImplemented", "500"):
            raise
        facts.refresh_error = str(exc)
    if target.stack:
        facts.policy_body = aws.call("cloudformation", "get_stack_policy", f"stack {target.stack}",
                                     StackName=target.stack).get("StackPolicyBody")
    for t in target.group_data.get("Tags", []):
        if t.get("Key") == LOCK_TAG:
            facts.lock = t.get("Value")
    facts.now = aws.server_time()
    return facts


def parse_lock(value: str | None) -> dict[str, str] | None:
    """Lock tag value ``<cycle_id>|<started ISO>|<strategy>|<expires ISO>`` as a dict (None if absent/garbled)."""
    if not value:
        return None
    parts = value.split("|")
    if len(parts) != 4:
        return None
    return dict(zip(("cycle_id", "started", "strategy", "expires"), parts))


def lock_value(cycle_id: str, started: datetime, strategy: str, expires: datetime) -> str:
    return f"{cycle_id}|{started.isoformat(timespec='seconds')}|{strategy}|{expires.isoformat(timespec='seconds')}"


def _problem(code: str, message: str, fix: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "fix": fix, **extra}


def check(facts: Facts, options: RebuildOptions) -> dict[str, Any]:
    """Decide. Returns ``{ok, problems, warnings, policy}``; pure (no AWS calls)."""
    t = facts.target
    problems: list[dict[str, Any]] = []
    warnings: list[str] = []
    who = f"stack {t.stack}" if t.stack else f"group {t.group}"

    # -- another cycle / update running ------------------------------------------------------------
    status = t.stack_status or ""
    if t.stack and status.endswith("_IN_PROGRESS"):
        problems.append(_problem(
            "cycle_in_progress",
            f"a rebuild cycle or another update is already running: stack {t.stack} is {status}",
            "wait for it to finish (watch rebuild.status) and run the cycle again",
            stack_status=status))
    active = [r for r in (facts.refreshes or []) if r.get("Status") in ACTIVE_REFRESH]
    if active:
        problems.append(_problem(
            "cycle_in_progress",
            f"a rebuild cycle is already running: instance refresh {active[0].get('InstanceRefreshId')} on "
            f"group {t.group} is {active[0].get('Status')}",
            "wait for it to finish or cancel it (CancelInstanceRefresh)",
            instance_refresh=active[0].get("InstanceRefreshId")))
    lock = parse_lock(facts.lock)
    if lock and facts.now is not None:
        try:
            expires = datetime.fromisoformat(lock["expires"])
        except ValueError:
            expires = None
        if expires is not None and expires > facts.now:
            problems.append(_problem(
                "cycle_in_progress",
                f"a rebuild cycle is already running on group {t.group}: cycle {lock['cycle_id']} "
                f"({lock['strategy']}) started {lock['started']}",
                f"wait for it to finish; a crashed cycle's lock (tag {LOCK_TAG}) expires at {lock['expires']} "
                "or can be removed by hand",
                cycle_id=lock["cycle_id"]))
    if facts.refreshes is None and options.strategy == "instance_refresh":
        warnings.append(f"could not list instance refreshes: {facts.refresh_error}")

    # -- stack stable --------------------------------------------------------------------------------
    if t.stack and not status.endswith("_IN_PROGRESS") and status not in STABLE_STATES:
        problems.append(_problem(
            "stack_not_stable",
            f"stack {t.stack} is {status}, not stable"
            + (f" ({t.stack_status_reason})" if t.stack_status_reason else ""),
            "bring the stack back to a *_COMPLETE state (fix the cause, ContinueUpdateRollback or update it) first",
            stack_status=status))

    # -- strategy prerequisites --------------------------------------------------------------------
    if options.strategy == "cloudformation":
        if not t.stack:
            problems.append(_problem(
                "no_stack", f"group {t.group} is not managed by a CloudFormation stack, so the cloudformation "
                "strategy cannot rebuild it", "use strategy=instance_refresh"))
        elif options.timestamp_parameter not in t.parameters:
            problems.append(_problem(
                "missing_parameter",
                f"stack {t.stack} has no parameter {options.timestamp_parameter}",
                f"add a String parameter {options.timestamp_parameter} to the template and reference it (Ref) in "
                "the launch template, e.g. as an instance tag, or use strategy=instance_refresh"))

    # -- stack policy ------------------------------------------------------------------------------
    policy_report: dict[str, Any] | None = None
    if t.stack:
        try:
            doc = policy_mod.parse(facts.policy_body)
        except ValueError as exc:
            doc = {"Statement": []}
            warnings.append(str(exc))
        report = policy_mod.analyse(doc, [(r["LogicalResourceId"], r["ResourceType"]) for r in t.resources],
                                    t.allowed_logical_ids)
        policy_report = report.as_dict()
        if not report.ok:
            message = f"stack policy of {t.stack}: " + "; ".join(report.problems)
            if options.strategy == "cloudformation":
                problems.append(_problem(
                    "stack_policy", message,
                    "run with fix_policy=True to set the recommended policy (see salt/rebuild/stack_policy.json)",
                    offending_statements=report.offending_statements, recommended=report.recommended))
            else:
                warnings.append(message)

    # -- lifecycle hook ----------------------------------------------------------------------------
    launch_hooks = [h for h in facts.hooks if h.get("LifecycleTransition") == "autoscaling:EC2_INSTANCE_LAUNCHING"]
    if not any(h.get("DefaultResult") == "ABANDON" for h in launch_hooks):
        msg = (f"group {t.group} has no LAUNCHING lifecycle hook with DefaultResult ABANDON"
               + (f" (found: {', '.join(h.get('LifecycleHookName', '?') + '=' + str(h.get('DefaultResult')) for h in launch_hooks)})"
                  if launch_hooks else ""))
        fix = ("add a lifecycle hook (LifecycleTransition autoscaling:EC2_INSTANCE_LAUNCHING, DefaultResult ABANDON) "
               "so an instance that never gets provisioned is never put in service")
        if options.require_launch_hook:
            problems.append(_problem("no_launch_hook", msg, fix))
        else:
            warnings.append(msg)

    return {"ok": not problems, "target": who, "group": t.group, "stack": t.stack, "problems": problems,
            "warnings": warnings, "policy": policy_report,
            "hooks": [{k: h.get(k) for k in ("LifecycleHookName", "LifecycleTransition", "DefaultResult",
                                             "HeartbeatTimeout")} for h in facts.hooks]}


def only_policy_problems(result: dict[str, Any]) -> bool:
    return bool(result["problems"]) and all(p["code"] == "stack_policy" for p in result["problems"])
