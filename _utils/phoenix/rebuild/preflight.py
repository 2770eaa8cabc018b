"""Preflight: gather facts about the target (read-only calls), then decide (pure) whether a cycle may start.

Checks, each a problem with a ``code``, a ``message`` and a ``fix``:

* ``stack_not_stable``   the stack is not in a ``*_COMPLETE`` state (or is in a rollback/failed state)
* ``cycle_in_progress``  a stack update, an instance refresh or another Phoenix cycle (lock tag) is running
* ``stack_policy``       the stack policy lets an update change more than the group and its launch resources
                         (or forbids changing them); fixable with ``fix_policy=True``
* ``no_launch_hook``     no LAUNCHING lifecycle hook with ``DefaultResult: ABANDON`` on the group
* ``missing_parameter``  the stack has no ``RebuildTimestamp`` parameter (cloudformation strategy)
* ``no_stack``           the cloudformation strategy was asked for a group no stack manages
* ``would_shrink``       the template hard-codes a size (DesiredCapacity, MaxSize, or a parameter shared with
                         another property) that an update would set below the group's current DesiredCapacity
* ``bad_pause_time``     the rolling update's PauseTime is malformed or longer than PT1H

Warnings (the cycle may start) include instances an instance refresh would leave old: protected from scale-in
or in Standby (:func:`held_instances_warning`).

A lock left by an interrupted cycle whose update has ended is reported (``stale_lock``) and removed by the
cycle; a lock whose update still runs is ``cycle_in_progress`` (see :mod:`phoenix.rebuild.lock`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.rebuild import lock as lock_mod
from phoenix.rebuild import policy as policy_mod
from phoenix.rebuild import template as tpl
from phoenix.rebuild.options import RebuildOptions
from phoenix.rebuild.target import Target

LOCK_TAG = lock_mod.LOCK_TAG
STABLE_STATES = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                 "IMPORT_ROLLBACK_COMPLETE")
#: an instance refresh in one of these states has not finished (Baking: the bake time after the last batch)
ACTIVE_REFRESH = lock_mod.ACTIVE_REFRESH


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
    template: tpl.GroupTemplate | None = None
    template_doc: dict[str, Any] = field(default_factory=dict)

    def lock_assessment(self, options: RebuildOptions) -> lock_mod.Assessment:
        t = self.target
        return lock_mod.assess(lock_mod.parse(self.lock), self.now or datetime.now().astimezone(),
                               t.stack_status, t.parameters, options.timestamp_parameter, self.refreshes)


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
        facts.template_doc = tpl.fetch(aws, target.stack)
        facts.template = tpl.group_template(facts.template_doc, target.group_logical_id, target.parameters)
    for t in target.group_data.get("Tags", []):
        if t.get("Key") == LOCK_TAG:
            facts.lock = t.get("Value")
    facts.now = aws.server_time()
    return facts


def capacity_problems(group_tpl: tpl.GroupTemplate, doc: dict[str, Any], t: Target,
                      options: RebuildOptions) -> list[dict[str, Any]]:
    """``would_shrink`` problems: an update would set the group below its current DesiredCapacity.

    CloudFormation sets the template's size properties on every update (unless the group's UpdatePolicy has
    AutoScalingScheduledAction IgnoreUnmodifiedGroupSizeProperties). A DesiredCapacity that ``Ref``s a
    parameter used nowhere else is passed at the group's current value (:func:`desired_override`); anything
    else that would shrink the group refuses the cycle, naming the template property.
    """
    if group_tpl.ignore_unmodified_size:
        return []
    current = int(t.group_data.get("DesiredCapacity") or 0)
    out = []
    where = f"stack {t.stack}'s template, resource {group_tpl.logical_id}"
    fix = ("remove DesiredCapacity from the template (CloudFormation then leaves the group's size alone), make it "
           "a parameter used only there, or set UpdatePolicy AutoScalingScheduledAction "
           "IgnoreUnmodifiedGroupSizeProperties: true")
    desired = group_tpl.desired
    if desired.kind == "literal":
        try:
            value = int(desired.value)
        except (TypeError, ValueError):
            value = None
        if value is not None and value < current:
            out.append(_problem("would_shrink", f"{where} hard-codes DesiredCapacity: {value}; the group has "
                                f"{current}: an update would scale it in to {value}", fix,
                                property="DesiredCapacity", template_value=value, current=current))
    elif desired.kind == "param" and options.keep_capacity:
        uses = [u for u in tpl.references(doc, desired.param or "")
                if u != f"Resources.{group_tpl.logical_id}.Properties.DesiredCapacity"]
        try:
            value = int(desired.value)
        except (TypeError, ValueError):
            value = None
        if uses and value is not None and value < current:
            out.append(_problem("would_shrink", f"{where}: DesiredCapacity is parameter {desired.param}={value}, "
                                f"which is also used by {', '.join(uses)}, so Phoenix cannot pass the group's "
                                f"current {current} without changing those; an update would scale the group in "
                                f"to {value}", fix, property="DesiredCapacity", parameter=desired.param,
                                template_value=value, current=current))
    maximum = group_tpl.max_size
    if maximum.kind in ("literal", "param"):
        try:
            top = int(maximum.value)
        except (TypeError, ValueError):
            top = None
        if top is not None and top < current:
            out.append(_problem("would_shrink", f"{where} sets MaxSize {top}"
                                + (f" (parameter {maximum.param})" if maximum.param else "")
                                + f", below the group's current DesiredCapacity {current}: an update would scale it "
                                f"in to {top}", "raise MaxSize in the template or its parameter",
                                property="MaxSize", template_value=top, current=current))
    return out


def desired_override(group_tpl: tpl.GroupTemplate | None, doc: dict[str, Any], t: Target,
                     options: RebuildOptions) -> dict[str, str]:
    """``{parameter: value}`` that keeps the group's current DesiredCapacity (within the template's min/max)
    through an update, when DesiredCapacity ``Ref``s a parameter used nowhere else; ``{}`` otherwise."""
    if not options.keep_capacity or group_tpl is None or group_tpl.desired.kind != "param":
        return {}
    if group_tpl.ignore_unmodified_size:
        return {}
    name = group_tpl.desired.param or ""
    if [u for u in tpl.references(doc, name) if u != f"Resources.{group_tpl.logical_id}.Properties.DesiredCapacity"]:
        return {}
    current = int(t.group_data.get("DesiredCapacity") or 0)
    low = int(group_tpl.min_size.value) if group_tpl.min_size.kind in ("literal", "param") else current
    high = int(group_tpl.max_size.value) if group_tpl.max_size.kind in ("literal", "param") else current
    value = max(low, min(current, high))
    if str(value) == str(t.parameters.get(name)):
        return {}
    return {name: str(value)}


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
    assessment = facts.lock_assessment(options)
    stale_lock = None
    if assessment.state in ("running", "releasing"):
        adoptable = assessment.state == "running" and assessment.lock is not None and assessment.lock.owner_dead()
        fix = ("its owner process is gone: the next cycle adopts and watches it (or run rebuild.cycle takeover=True)"
               if adoptable else
               "wait for it to finish (rebuild.status shows the lock); if its owner died, run rebuild.cycle "
               "takeover=True to adopt and watch it, or rebuild.unlock once its update has ended")
        if assessment.state == "releasing":
            fix = "try again in a few minutes, or rebuild.cycle takeover=True"
        problems.append(_problem("cycle_in_progress", f"a rebuild cycle is already running on group {t.group}: "
                                 + assessment.message, fix, cycle_id=assessment.lock.cycle_id if assessment.lock
                                 else None, lock_state=assessment.state, adoptable=adoptable))
    elif assessment.state == "stale":
        stale_lock = assessment.message
        warnings.append(f"{assessment.message}; the stale lock is removed before this cycle starts")
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

    # -- the template: capacity kept, PauseTime valid -----------------------------------------------
    if t.stack and options.strategy == "cloudformation" and facts.template is not None and facts.template.found:
        for problem in capacity_problems(facts.template, facts.template_doc, t, options):
            problems.append(problem)
        if facts.template.pause_problem:
            problems.append(_problem("bad_pause_time", facts.template.pause_problem,
                                     "use an ISO 8601 duration of at most PT1H (e.g. PT5M) in the template's "
                                     "AutoScalingRollingUpdate"))
        if not facts.template.rolling:
            warnings.append(f"{t.group_logical_id} has no AutoScalingRollingUpdate UpdatePolicy: CloudFormation "
                            "would not replace its instances on an update")

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

    # -- protected / Standby instances an instance refresh would not replace ------------------------------
    if options.strategy == "instance_refresh":
        held = held_instances_warning(t.group, t.group_data.get("Instances", []))
        if held:
            warnings.append(held)

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
            "warnings": warnings, "policy": policy_report, "stale_lock": stale_lock,
            "lock": assessment.as_dict(facts.now) if facts.now else None,
            "hooks": [{k: h.get(k) for k in ("LifecycleHookName", "LifecycleTransition", "DefaultResult",
                                             "HeartbeatTimeout")} for h in facts.hooks]}


def held_instances_warning(group: str, instances: list[dict[str, Any]]) -> str | None:
    """The warning for instances protected from scale-in or in Standby, or None when there are none.

    Phoenix starts its instance refresh with AWS's defaults for these (RefreshPreferences in the Auto Scaling
    API Reference): ``ScaleInProtectedInstances`` and ``StandbyInstances`` are ``Wait``, "waits one hour for you
    to remove scale-in protection [return the instances to service]. Otherwise, the instance refresh will
    fail". Such an instance stays old; the cycle's summary then lists it in ``old_instances_left`` and fails.

    >>> held_instances_warning("web", [{"InstanceId": "i-1", "ProtectedFromScaleIn": True,
    ...                                 "LifecycleState": "InService"}])[:60]
    'group web: instance(s) i-1 protected from scale-in will not '
    """
    standby = sorted(i["InstanceId"] for i in instances if str(i.get("LifecycleState", "")).startswith("Standby"))
    protected = sorted(i["InstanceId"] for i in instances
                       if i.get("ProtectedFromScaleIn") and i["InstanceId"] not in standby)
    if not standby and not protected:
        return None
    parts, fixes = [], []
    if protected:
        parts.append(f"instance(s) {', '.join(protected)} protected from scale-in")
        fixes.append("remove the protection (aws autoscaling set-instance-protection --no-protected-from-scale-in) "
                     "or refresh with the preference ScaleInProtectedInstances=Refresh")
    if standby:
        parts.append(f"instance(s) {', '.join(standby)} in Standby")
        fixes.append("return them to service (aws autoscaling exit-standby) or refresh with the preference "
                     "StandbyInstances=Terminate")
    return (f"group {group}: {' and '.join(parts)} will not be rebuilt: the instance refresh (AWS's default "
            "preferences ScaleInProtectedInstances=Wait, StandbyInstances=Wait) waits one hour for them, then "
            "fails and leaves them old; " + "; ".join(fixes)
            + " (Phoenix's cycle starts its refresh with AWS's defaults for both)")


def only_policy_problems(result: dict[str, Any]) -> bool:
    return bool(result["problems"]) and all(p["code"] == "stack_policy" for p in result["problems"])
