"""One rebuild cycle: resolve -> status before -> preflight (-> fix policy) -> lock -> trigger -> watch -> summary.

``run_cycle`` returns a summary dict (``result`` True/False) once a cycle was triggered, and raises
:class:`~phoenix.rebuild.errors.RebuildError` / :class:`~phoenix.aws.PhoenixAWSError` when it refuses
to start (nothing changed). A failed cycle leaves the old fleet serving: CloudFormation rolls the
update back, an instance refresh stops; the summary says which instances are in service.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.rebuild import preflight as pf
from phoenix.rebuild import status as st
from phoenix.rebuild import trigger as tr
from phoenix.rebuild.errors import CycleInProgress, PreflightFailed, RebuildError
from phoenix.rebuild.options import RebuildOptions, format_duration
from phoenix.rebuild.progress import Emit, Reporter
from phoenix.rebuild.target import Target, describe_group, resolve
from phoenix.rebuild.watch import Backoff, InstanceView, Snapshot, Tracker, watch


def new_cycle_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def run_preflight(aws: AWS, target: Target, options: RebuildOptions, fix_policy: bool = False,
                  dry_run: bool = False, reporter: Reporter | None = None) -> dict[str, Any]:
    """Gather + check; with ``fix_policy`` set the recommended stack policy (unless ``dry_run``) and re-check."""
    facts = pf.gather(aws, target)
    result = pf.check(facts, options)
    policy_problem = [p for p in result["problems"] if p["code"] == "stack_policy"]
    if fix_policy and target.stack and (policy_problem or (result["policy"] and not result["policy"]["ok"])):
        recommended = result["policy"]["recommended"]
        if dry_run:
            result["would_fix_policy"] = recommended
            result["problems"] = [p for p in result["problems"] if p["code"] != "stack_policy"]
            result["ok"] = not result["problems"]
        else:
            aws.call("cloudformation", "set_stack_policy", f"stack {target.stack}", StackName=target.stack,
                     StackPolicyBody=json.dumps(recommended))
            if reporter:
                reporter.event("policy/fixed", f"stack policy of {target.stack} set to allow only "
                               f"{', '.join(target.allowed_logical_ids)}", policy=recommended,
                               previous_offending=result["policy"]["offending_statements"])
            facts = pf.gather(aws, target)
            fixed = pf.check(facts, options)
            fixed["policy_fixed"] = recommended
            result = fixed
    return result


def _refuse(reporter: Reporter, pre: dict[str, Any]) -> None:
    codes = {p["code"] for p in pre["problems"]}
    reporter.event("failed", "refused by preflight: " + "; ".join(p["message"] for p in pre["problems"]),
                   failed_at="preflight", problems=pre["problems"])
    cls = CycleInProgress if "cycle_in_progress" in codes else PreflightFailed
    raise cls(reporter.group, pre["problems"])


def _views(group_data: dict[str, Any], launched: dict[str, datetime]) -> dict[str, InstanceView]:
    out = {}
    for inst in group_data.get("Instances", []):
        spec = inst.get("LaunchTemplate") or (
            {"LaunchConfigurationName": inst["LaunchConfigurationName"]} if inst.get("LaunchConfigurationName") else {})
        out[inst["InstanceId"]] = InstanceView(inst["InstanceId"], inst.get("LifecycleState", "?"),
                                               st.version_label(spec), launched.get(inst["InstanceId"]))
    return out


def make_fetch(aws: AWS, target: Target, strategy: str, started: datetime, refresh_id: str | None
               ) -> Callable[[], Snapshot]:
    """A poll: stack status + new group-resource events (or the refresh), and the group's instances."""

    def fetch() -> Snapshot:
        events: list[dict[str, Any]] = []
        percent = None
        if strategy == "cloudformation":
            s = aws.call("cloudformation", "describe_stacks", f"stack {target.stack}",
                         StackName=target.stack)["Stacks"][0]
            status, reason = s.get("StackStatus"), s.get("StackStatusReason")
            page = aws.call("cloudformation", "describe_stack_events", f"stack {target.stack}",
                            StackName=target.stack).get("StackEvents", [])
            cutoff = started.replace(microsecond=0)
            events = [e for e in page if e.get("LogicalResourceId") == target.group_logical_id
                      and isinstance(e.get("Timestamp"), datetime) and e["Timestamp"] >= cutoff]
        else:
            r = aws.call("autoscaling", "describe_instance_refreshes", f"group {target.group}",
                         AutoScalingGroupName=target.group, InstanceRefreshIds=[refresh_id]
                         ).get("InstanceRefreshes", [])
            status = r[0].get("Status") if r else "Unknown"
            reason = r[0].get("StatusReason") if r else "instance refresh not found"
            percent = r[0].get("PercentageComplete") if r else None
        group_data = describe_group(aws, target.group)
        return Snapshot(status=status, reason=reason, instances=_views(group_data, {}), percent=percent,
                        stack_events=events)

    return fetch


def run_cycle(
    aws: AWS,
    options: RebuildOptions,
    stack: str | None = None,
    group: str | None = None,
    dry_run: bool = False,
    fix_policy: bool = False,
    emit: Emit | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run (or with ``dry_run`` describe) one rebuild cycle of ``stack``/``group``. See the module doc."""
    t0 = monotonic()
    try:
        target = resolve(aws, stack=stack, group=group)
    except (RebuildError, PhoenixAWSError) as exc:
        if stack or group:  # say so on the bus too, under the name the caller used
            Reporter(str(group or stack), stack, "-", emit, monotonic=monotonic).event(
                "failed", str(exc), failed_at="resolve", error=str(exc))
        raise
    cache: dict[str, datetime] = {}
    before = st.collect(aws, target.group, options.max_age, cache, group_data=target.group_data)
    started = aws.server_time()
    cycle_id = new_cycle_id(started)
    reporter = Reporter(target.group, target.stack, cycle_id, emit, monotonic=monotonic)
    original = {r["instance_id"] for r in before["instances"] if r["lifecycle_state"] not in ("Terminating",
                                                                                                "Terminated")}
    reporter.event("started", f"{'dry run of ' if dry_run else ''}{options.strategy} cycle of {len(original)} "
                   f"instance(s), oldest {format_duration(before['oldest_age_seconds'])} old",
                   strategy=options.strategy, dry_run=dry_run, instances=len(original),
                   oldest_age_seconds=before["oldest_age_seconds"])

    pre = run_preflight(aws, target, options, fix_policy=fix_policy, dry_run=dry_run, reporter=reporter)
    reporter.event("preflight", "passed" if pre["ok"] else "failed", ok=pre["ok"],
                   problems=[p["message"] for p in pre["problems"]], warnings=pre["warnings"])
    if not pre["ok"]:
        _refuse(reporter, pre)

    timestamp = started.strftime("%Y-%m-%dT%H:%M:%SZ") + "/" + cycle_id.rsplit("-", 1)[1]
    if options.strategy == "cloudformation":
        plan = tr.plan_cloudformation(target, options, timestamp)
        action = (f"UpdateStack {target.stack} with {options.timestamp_parameter}={timestamp} (every other "
                  "parameter unchanged), letting AutoScalingRollingUpdate replace the instances")
    else:
        plan = tr.plan_instance_refresh(target, options)
        action = f"StartInstanceRefresh on {target.group} (MinHealthyPercentage {options.min_healthy_percentage})"

    base = {
        "group": target.group, "stack": target.stack, "strategy": options.strategy, "cycle_id": cycle_id,
        "instances_before": len(original), "oldest_age_before": before["oldest_age_seconds"],
        "preflight": {"warnings": pre["warnings"], "policy_fixed": "policy_fixed" in pre},
    }
    if dry_run:
        comment = f"Would run {action}, replacing {len(original)} instance(s): {', '.join(sorted(original)) or 'none'}."
        if pre.get("would_fix_policy"):
            comment += " Would first set the recommended stack policy."
        reporter.event("finished", comment, dry_run=True)
        return {**base, "dry_run": True, "comment": comment, "would": action, "plan": plan,
                "would_replace": sorted(original), "would_fix_policy": pre.get("would_fix_policy"),
                "api_calls": aws.calls}

    # -- lock, trigger, watch ------------------------------------------------------------------------
    expires = started + timedelta(seconds=options.deadline + 600)
    aws.call("autoscaling", "create_or_update_tags", f"group {target.group}", Tags=[{
        "ResourceId": target.group, "ResourceType": "auto-scaling-group", "Key": pf.LOCK_TAG,
        "Value": pf.lock_value(cycle_id, started, options.strategy, expires), "PropagateAtLaunch": False}])
    tracker = Tracker(original=set(original), reporter=reporter)
    try:
        try:
            sent = tr.send(aws, options.strategy, plan, target)
        except CycleInProgress as exc:
            reporter.event("failed", str(exc), failed_at="trigger")
            raise
        except PhoenixAWSError as exc:
            reporter.event("failed", f"could not start: {exc}", failed_at="trigger", error=str(exc))
            raise
        reporter.event("triggered", action, **sent)
        fetch = make_fetch(aws, target, options.strategy, started, sent.get("instance_refresh_id"))
        backoff = Backoff(options.poll_initial, options.poll_factor, options.poll_max)
        try:
            result = watch(options.strategy, fetch, tracker, backoff, options.deadline, sleep=sleep,
                           monotonic=monotonic, heartbeat=options.heartbeat)
        except PhoenixAWSError as exc:
            message = (f"lost track of cycle {cycle_id} of {target.group} after it started: {exc}. The update may "
                       "still be running: check rebuild.status and the stack events before starting another")
            reporter.event("failed", message, failed_at="watch", error=str(exc))
            raise RebuildError(message) from None
        cancelled = None
        if result.outcome == "deadline" and options.cancel_on_deadline:
            try:
                if options.strategy == "cloudformation":
                    aws.call("cloudformation", "cancel_update_stack", f"stack {target.stack}", StackName=target.stack)
                    cancelled = "update cancelled; CloudFormation rolls back to the previous launch version"
                else:
                    aws.call("autoscaling", "cancel_instance_refresh", f"group {target.group}",
                             AutoScalingGroupName=target.group)
                    cancelled = "instance refresh cancelled; instances not yet replaced keep serving"
            except PhoenixAWSError as exc:
                cancelled = f"could not cancel: {exc}"
    finally:
        try:
            aws.call("autoscaling", "delete_tags", f"group {target.group}", Tags=[{
                "ResourceId": target.group, "ResourceType": "auto-scaling-group", "Key": pf.LOCK_TAG}])
        except PhoenixAWSError as exc:
            reporter.log.warning("rebuild %s: could not remove lock tag %s: %s", target.group, pf.LOCK_TAG, exc)

    # -- summary -------------------------------------------------------------------------------------
    after = st.collect(aws, target.group, options.max_age, cache)
    snap = result.snapshot
    old_left = sorted(r["instance_id"] for r in after["instances"]
                      if r["instance_id"] in original or (r["launch_time"] and
                                                          datetime.fromisoformat(r["launch_time"]) < started))
    duration = round(monotonic() - t0, 3)
    ok = result.outcome == "succeeded" and not old_left
    if result.outcome == "succeeded" and old_left:
        reason = (f"the update finished ({snap.status if snap else '?'}) but {len(old_left)} instance(s) older "
                  f"than the cycle's start remain: {', '.join(old_left)}")
    elif result.outcome == "deadline":
        reason = f"deadline of {format_duration(options.deadline)} exceeded ({snap.status if snap else '?'}); {cancelled or 'left running'}"
    elif result.outcome == "failed":
        reason = f"{options.strategy} update ended {snap.status if snap else '?'}" + (
            f": {snap.reason}" if snap and snap.reason else "")
    else:
        reason = ""
    summary = {
        **base,
        "result": ok,
        "dry_run": False,
        "status": snap.status if snap else None,
        "replaced": len(tracker.replaced),
        "abandoned": len(tracker.abandoned),
        "launched": len(tracker.launched),
        "replaced_instances": sorted(tracker.replaced),
        "abandoned_instances": sorted(tracker.abandoned),
        "new_instances": sorted(r["instance_id"] for r in after["instances"] if r["instance_id"] not in original),
        "old_instances_left": old_left,
        "instances_after": after["count"],
        "in_service_after": after["in_service"],
        "oldest_age_after": after["oldest_age_seconds"],
        "duration_seconds": duration,
        "polls": result.polls,
        "api_calls": aws.calls,
        "reason": reason or None,
    }
    counts = (f"replaced {summary['replaced']}, abandoned {summary['abandoned']}, in service "
              f"{summary['in_service_after']}/{after['count']}, oldest "
              f"{format_duration(before['oldest_age_seconds'])} -> {format_duration(after['oldest_age_seconds'])}, "
              f"{format_duration(duration)}")
    if ok:
        summary["comment"] = f"Rebuilt {target.group}: {counts}."
        reporter.event("finished", summary["comment"], **_event_summary(summary))
    else:
        summary["comment"] = (f"Rebuild of {target.group} failed: {reason}. {counts}. The instances in service "
                              "were left serving.")
        reporter.event("failed", summary["comment"], failed_at="watch", **_event_summary(summary))
    return summary


def _event_summary(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("result", "status", "replaced", "abandoned", "launched", "in_service_after", "oldest_age_before",
            "oldest_age_after", "duration_seconds", "reason")
    return {k: summary[k] for k in keys}
