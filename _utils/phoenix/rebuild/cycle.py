"""One rebuild cycle: resolve -> status before -> preflight (-> fix policy) -> plan -> trigger (AWS accepts one
update at a time: the lock) -> lock tag -> watch (abandon budget, deadline) -> cancel and watch the rollback
-> release -> record the duration -> summary.

``run_cycle`` returns a summary dict (``result`` True/False) once a cycle was triggered, and raises
:class:`~phoenix.rebuild.errors.RebuildError` / :class:`~phoenix.aws.PhoenixAWSError` when it refuses
to start (saying what, if anything, it changed: at most the stack policy with ``fix_policy``). A failed
cycle is rolled back (CloudFormation) or stopped (instance refresh); the summary says how many original
instances were terminated first and what is in service now. An interrupted cycle found by the next call
is adopted (its update still runs) or reported and cleaned up (its update ended): see
:mod:`phoenix.rebuild.lock`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.rebuild import history as hist
from phoenix.rebuild import lock as lk
from phoenix.rebuild import preflight as pf
from phoenix.rebuild import schedule as sched
from phoenix.rebuild import status as st
from phoenix.rebuild import trigger as tr
from phoenix.rebuild.errors import CycleInProgress, PreflightFailed, RebuildError
from phoenix.rebuild.options import RebuildOptions, format_duration
from phoenix.rebuild.progress import Emit, Reporter
from phoenix.rebuild.target import Target, describe_group, resolve
from phoenix.rebuild.watch import Backoff, InstanceView, Snapshot, Tracker, WatchResult, watch


def new_cycle_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def run_preflight(aws: AWS, target: Target, options: RebuildOptions, fix_policy: bool = False,
                  dry_run: bool = False, reporter: Reporter | None = None) -> dict[str, Any]:
    """Gather + check; with ``fix_policy`` set the recommended stack policy (unless ``dry_run``) and re-check.

    The facts preflight looked at are under ``"_facts"`` (not JSON: callers that return the result pop it).
    """
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
    result["_facts"] = facts
    return result


def plan_for(options: RebuildOptions, target: Target, facts: pf.Facts, instances: int) -> sched.Plan:
    """The cycle's plan (batches, expected duration, deadline) from the template, hooks and history."""
    group_tpl = facts.template
    max_batch = group_tpl.max_batch if group_tpl is not None and group_tpl.found else 1
    pause = group_tpl.pause if group_tpl is not None and group_tpl.found else 0.0
    entries = hist.from_tags(target.group_data.get("Tags", []))
    return sched.make_plan(options, instances, max_batch, pause, facts.hooks, entries)


def _refuse(reporter: Reporter, pre: dict[str, Any]) -> None:
    codes = {p["code"] for p in pre["problems"]}
    reporter.event("failed", "refused by preflight: " + "; ".join(p["message"] for p in pre["problems"]),
                   failed_at="preflight", problems=pre["problems"])
    cls = CycleInProgress if "cycle_in_progress" in codes else PreflightFailed
    changed = ("only the stack policy was changed (fix_policy)" if "policy_fixed" in pre
               else "nothing was changed")
    raise cls(reporter.group, pre["problems"], changed)


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
                        stack_events=events, lock=next((t.get("Value") for t in group_data.get("Tags", [])
                                                        if t.get("Key") == lk.LOCK_TAG), None),
                        desired=group_data.get("DesiredCapacity"))

    return fetch


def _cancel(aws: AWS, target: Target, strategy: str) -> str:
    try:
        if strategy == "cloudformation":
            aws.call("cloudformation", "cancel_update_stack", f"stack {target.stack}", StackName=target.stack)
            return "update cancelled; CloudFormation rolls back to the previous launch version"
        aws.call("autoscaling", "cancel_instance_refresh", f"group {target.group}", AutoScalingGroupName=target.group)
        return "instance refresh cancelled; instances not yet replaced keep serving"
    except PhoenixAWSError as exc:
        return f"could not cancel: {exc}"


def _record(aws: AWS, target: Target, entry: hist.Entry, reporter: Reporter) -> None:
    """Append ``entry`` to the group's history tag (the tag is re-read first: another master may have written)."""
    try:
        current = describe_group(aws, target.group)
        value = hist.add(hist.from_tags(current.get("Tags", [])), entry)
        aws.call("autoscaling", "create_or_update_tags", f"group {target.group}", Tags=[{
            "ResourceId": target.group, "ResourceType": "auto-scaling-group", "Key": hist.HISTORY_TAG,
            "Value": value, "PropagateAtLaunch": False}])
    except (PhoenixAWSError, RebuildError) as exc:
        reporter.log.warning("rebuild %s: could not record the cycle in tag %s: %s", target.group,
                             hist.HISTORY_TAG, exc)


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
    takeover: bool = False,
) -> dict[str, Any]:
    """Run (or with ``dry_run`` describe) one rebuild cycle of ``stack``/``group``. See the module doc.

    ``takeover``: when another cycle's lock is found and its update still runs, adopt it (watch it to its
    end and report it) instead of refusing; when its update has ended, remove the lock and start anew.
    """
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
    facts: pf.Facts = pre.pop("_facts")
    plan = plan_for(options, target, facts, len(original) or int(target.group_data.get("DesiredCapacity") or 0))
    options = replace(options, deadline=plan.deadline)
    reporter.event("preflight", "passed" if pre["ok"] else "failed", ok=pre["ok"],
                   problems=[p["message"] for p in pre["problems"]], warnings=pre["warnings"], plan=plan.as_dict())
    assessment = facts.lock_assessment(options)
    busy = [p for p in pre["problems"] if p["code"] == "cycle_in_progress"]
    adopt = (assessment.state == "running" and assessment.lock is not None and not assessment.lock.garbled
             and (takeover or assessment.lock.owner_dead()))
    stale = assessment.state == "stale" or (takeover and assessment.state == "releasing")
    if adopt and not dry_run and all(p["code"] == "cycle_in_progress" for p in pre["problems"]):
        return _adopt(aws, target, options, plan, assessment, before, cache, reporter, cycle_id, sleep, monotonic,
                      t0)
    if stale and busy and all(p.get("lock_state") == "releasing" for p in busy):
        pre["problems"] = [p for p in pre["problems"] if p.get("lock_state") != "releasing"]
        pre["ok"] = not pre["problems"]
    if not pre["ok"]:
        _refuse(reporter, pre)

    timestamp = started.strftime("%Y-%m-%dT%H:%M:%SZ") + "/" + cycle_id.rsplit("-", 1)[1]
    override: dict[str, str] = {}
    if options.strategy == "cloudformation":
        override = pf.desired_override(facts.template, facts.template_doc, target, options)
        cfn_plan = tr.plan_cloudformation(target, options, timestamp, override)
        action = (f"UpdateStack {target.stack} with {options.timestamp_parameter}={timestamp} (every other "
                  "parameter unchanged"
                  + (f", {', '.join(f'{k}={v}' for k, v in override.items())} to keep the group's current "
                     "DesiredCapacity" if override else "")
                  + "), letting AutoScalingRollingUpdate replace the instances")
        call_plan = cfn_plan
    else:
        call_plan = tr.plan_instance_refresh(target, options)
        action = (f"StartInstanceRefresh on {target.group} (MinHealthyPercentage {options.min_healthy_percentage}: "
                  f"{plan.batch_size} at a time)")

    base = {
        "group": target.group, "stack": target.stack, "strategy": options.strategy, "cycle_id": cycle_id,
        "instances_before": len(original), "oldest_age_before": before["oldest_age_seconds"],
        "desired_before": before["desired"],
        "preflight": {"warnings": pre["warnings"], "policy_fixed": "policy_fixed" in pre},
        "plan": plan.as_dict(), "interrupted_cycle": pre.get("stale_lock"),
        "kept_capacity": override or None,
    }
    if dry_run:
        comment = (f"Would run {action}, replacing {len(original)} instance(s): {', '.join(sorted(original)) or 'none'}."
                   f" Plan: {plan.text()}.")
        if pre.get("would_fix_policy"):
            comment += " Would first set the recommended stack policy."
        if pre.get("stale_lock"):
            comment += f" Would first remove the stale lock: {pre['stale_lock']}."
        reporter.event("finished", comment, dry_run=True)
        return {**base, "dry_run": True, "comment": comment, "would": action, "call": call_plan,
                "would_replace": sorted(original), "would_fix_policy": pre.get("would_fix_policy"),
                "api_calls": aws.calls}

    # -- a stale lock from an interrupted cycle: say what it left, remove it -----------------------------
    if assessment.state in ("stale", "releasing") and assessment.lock is not None:
        released = lk.release(aws, target.group, assessment.lock.raw)
        reporter.event("lock/stale", f"{assessment.message}; lock {released}", lock=assessment.as_dict(started),
                       released=released)

    # -- trigger: AWS accepts one update at a time, that is the lock -------------------------------------
    try:
        _recheck(aws, target, facts, options, assessment.lock.raw if assessment.lock else None)
        sent = tr.send(aws, options.strategy, call_plan, target)
    except CycleInProgress as exc:
        changed = "only the stack policy it set" if "policy_fixed" in pre else "nothing"
        holder = lk.current(aws, target.group)
        message = (f"rebuild of {target.group} refused: another cycle"
                   + (f" ({holder.cycle_id}, owner {holder.owner})" if holder and not holder.garbled else "")
                   + f" got the group first ({exc.problems[0]['message']}); this call changed {changed}")
        reporter.event("failed", message, failed_at="trigger", error=str(exc))
        raise CycleInProgress(target.group, [{"code": "cycle_in_progress", "message": message,
                                              "fix": "wait for that cycle (rebuild.status)"}]) from None
    except PhoenixAWSError as exc:
        reporter.event("failed", f"could not start: {exc}", failed_at="trigger", error=str(exc))
        raise
    operation = timestamp if options.strategy == "cloudformation" else str(sent.get("instance_refresh_id"))
    reporter.event("triggered", action, **sent)
    lock_value = lk.make_value(cycle_id, started, options.strategy, operation)
    try:
        lk.write(aws, target.group, lock_value)
        reporter.event("lock/acquired", f"lock {lk.LOCK_TAG} written for cycle {cycle_id}", lock=lock_value)
    except PhoenixAWSError as exc:
        reporter.log.warning("rebuild %s: could not write the lock tag: %s", target.group, exc)
        lock_value = None  # type: ignore[assignment]
    trigger_t = monotonic()
    result = _watch_to_end(aws, target, options, plan, set(original), reporter, sleep, monotonic, started,
                           operation, lock_value)
    return _finish(aws, target, options, plan, base, result, original, before, cache, reporter, started, t0,
                   trigger_t, lock_value, monotonic)


def _recheck(aws: AWS, target: Target, facts: pf.Facts, options: RebuildOptions, removed: str | None) -> None:
    """Just before the trigger: has another cycle run (or started) since preflight looked?

    AWS refuses a second update while one runs, but a fast update of another cycle could start *and end*
    between this cycle's preflight and its trigger; then both would run one after the other and the second
    would take the first's lock tag while the first still releases it. So the trigger only goes out when the
    stack's timestamp parameter, the group's instance refreshes and its lock tag are what preflight saw.
    """
    changed = None
    now_lock = lk.current(aws, target.group)
    if now_lock is not None and now_lock.raw != removed:
        changed = f"cycle {now_lock.cycle_id} (owner {now_lock.owner}) took the group meanwhile"
    elif options.strategy == "cloudformation" and target.stack:
        s = aws.call("cloudformation", "describe_stacks", f"stack {target.stack}", StackName=target.stack)["Stacks"][0]
        params = {p["ParameterKey"]: p.get("ParameterValue") for p in s.get("Parameters", [])}
        if s.get("StackStatus") != target.stack_status or params.get(options.timestamp_parameter) != \
                target.parameters.get(options.timestamp_parameter):
            changed = (f"stack {target.stack} changed since preflight ({target.stack_status} -> {s.get('StackStatus')}, "
                       f"{options.timestamp_parameter} {target.parameters.get(options.timestamp_parameter)} -> "
                       f"{params.get(options.timestamp_parameter)}): another cycle ran meanwhile")
    elif options.strategy == "instance_refresh" and facts.refreshes is not None:
        refreshes = aws.call("autoscaling", "describe_instance_refreshes", f"group {target.group}",
                             AutoScalingGroupName=target.group, MaxRecords=5).get("InstanceRefreshes", [])
        seen = {r.get("InstanceRefreshId") for r in facts.refreshes or []}
        new = [r.get("InstanceRefreshId") for r in refreshes if r.get("InstanceRefreshId") not in seen]
        if new:
            changed = f"instance refresh {new[0]} started on {target.group} since preflight: another cycle ran"
    if changed:
        raise CycleInProgress(target.group, [{"code": "cycle_in_progress", "message": changed,
                                              "fix": "run the check again; it decides from the new state"}])


def _watch_to_end(aws: AWS, target: Target, options: RebuildOptions, plan: sched.Plan, original: set[str],
                  reporter: Reporter, sleep: Callable[[float], Any], monotonic: Callable[[], float],
                  started: datetime, operation: str, lock_value: str | None) -> dict[str, Any]:
    """Watch, cancel on the deadline or the abandon budget, then watch the rollback to its end (bounded)."""
    tracker = Tracker(original=original, reporter=reporter, max_abandons=options.max_abandons,
                      max_abandons_first_batch=options.max_abandons_first_batch)
    refresh_id = operation if options.strategy == "instance_refresh" else None
    fetch = make_fetch(aws, target, options.strategy, started, refresh_id)
    backoff = Backoff(options.poll_initial, options.poll_factor, options.poll_max)
    out: dict[str, Any] = {"tracker": tracker, "cancelled": None, "settled": True, "rollback_wait": None}
    try:
        result = watch(options.strategy, fetch, tracker, backoff, float(options.deadline or plan.deadline),
                       sleep=sleep, monotonic=monotonic, heartbeat=options.heartbeat, lock_value=lock_value)
        out["first"] = result
        if result.outcome == "abandon_budget" or (result.outcome == "deadline" and options.cancel_on_deadline):
            out["cancelled"] = _cancel(aws, target, options.strategy)
            why = result.detail if result.outcome == "abandon_budget" else \
                f"deadline of {format_duration(options.deadline)} reached"
            reporter.event("cancelled", f"{why}: {out['cancelled']}", reason=why, **tracker.counts())
            wait = options.rollback_wait if options.rollback_wait is not None else plan.deadline
            out["rollback_wait"] = wait
            backoff.reset()
            settled = watch(options.strategy, fetch, tracker, backoff, float(wait), sleep=sleep,
                            monotonic=monotonic, heartbeat=options.heartbeat, until_settled=True)
            out["settled"] = settled.outcome != "deadline"
            result = WatchResult(result.outcome, settled.snapshot, result.polls + settled.polls, result.detail)
        out["result"] = result
    except PhoenixAWSError as exc:
        message = (f"lost track of cycle {reporter.cycle_id} of {target.group} after it started: {exc}. The update "
                   "may still be running: check rebuild.status and the stack events before starting another")
        reporter.event("failed", message, failed_at="watch", error=str(exc))
        raise RebuildError(message) from None
    return out


def _finish(aws: AWS, target: Target, options: RebuildOptions, plan: sched.Plan, base: dict[str, Any],
            watched: dict[str, Any], original: set[str], before: dict[str, Any], cache: dict[str, datetime],
            reporter: Reporter, started: datetime, t0: float, trigger_t: float, lock_value: str | None,
            monotonic: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    result: WatchResult = watched["result"]
    tracker: Tracker = watched["tracker"]
    snap = result.snapshot
    status = snap.status if snap else None
    lost = result.outcome == "lock_lost"
    released = "not held"
    if lock_value is not None and watched["settled"] and not lost:
        released = lk.release(aws, target.group, lock_value)
        reporter.event("lock/released", f"lock {released}", released=released == "released")

    # a rollback puts the previous template's size back: give the group its size from before the cycle
    capacity_note = None
    if result.outcome != "succeeded" and watched["settled"] and not lost and before.get("desired") is not None:
        try:
            now_group = describe_group(aws, target.group)
            want = max(int(now_group.get("MinSize") or 0), min(int(before["desired"]), int(now_group.get("MaxSize") or 0)))
            if int(now_group.get("DesiredCapacity") or 0) < want:
                aws.call("autoscaling", "set_desired_capacity", f"group {target.group}",
                         AutoScalingGroupName=target.group, DesiredCapacity=want, HonorCooldown=False)
                capacity_note = (f"the rollback set DesiredCapacity to {now_group.get('DesiredCapacity')}; set back to "
                                 f"{want}, the group's size before the cycle")
                reporter.event("capacity", capacity_note, desired=want)
        except (PhoenixAWSError, RebuildError) as exc:
            capacity_note = f"could not restore DesiredCapacity {before['desired']}: {exc}"

    after = st.collect(aws, target.group, options.max_age, cache)
    old_left = sorted(r["instance_id"] for r in after["instances"]
                      if r["instance_id"] in original or (r["launch_time"] and
                                                          datetime.fromisoformat(r["launch_time"]) < started))
    duration = round(monotonic() - t0, 3)
    ok = result.outcome == "succeeded" and not old_left
    terminated = sorted(tracker.replaced & original)
    if result.outcome == "succeeded" and old_left:
        reason = (f"the update finished ({status or '?'}) but {len(old_left)} instance(s) older "
                  f"than the cycle's start remain: {', '.join(old_left)}")
    elif result.outcome in ("deadline", "abandon_budget"):
        why = result.detail if result.outcome == "abandon_budget" else \
            f"deadline of {format_duration(options.deadline)} exceeded"
        reason = f"{why}; {watched['cancelled'] or 'left running (cancel_on_deadline is off)'}"
        if watched["cancelled"] and watched["settled"]:
            reason += f"; the update ended {status}"
        elif watched["cancelled"]:
            reason += (f"; after {format_duration(watched['rollback_wait'])} the rollback is still running ({status}): "
                       f"follow it with `salt-call rebuild.status {'stack=' + target.stack if target.stack else 'group=' + target.group}`"
                       + (f" or `aws cloudformation describe-stack-events --stack-name {target.stack}`" if target.stack
                          else "") + "; its lock stays until a later cycle finds the update ended")
    elif result.outcome == "failed":
        reason = f"{options.strategy} update ended {status or '?'}" + (
            f": {snap.reason}" if snap and snap.reason else "")
    elif lost:
        reason = (f"this cycle lost its lock ({result.detail}): someone ran rebuild.unlock or took the cycle over; "
                  "this call stopped watching and the update goes on under the new owner")
    else:
        reason = ""
    entry_outcome = {"succeeded": "ok", "deadline": "deadline", "abandon_budget": "cancelled"}.get(result.outcome,
                                                                                                  "failed")
    if not lost:
        _record(aws, target, hist.Entry(int(aws.server_time().timestamp()), int(round(monotonic() - trigger_t)),
                                        plan.batches, len(original), entry_outcome), reporter)
    summary = {
        **base,
        "result": ok,
        "dry_run": False,
        "status": status,
        "outcome": result.outcome,
        "settled": watched["settled"],
        "replaced": len(tracker.replaced),
        "abandoned": len(tracker.abandoned),
        "launched": len(tracker.launched),
        "replaced_instances": sorted(tracker.replaced),
        "abandoned_instances": sorted(tracker.abandoned),
        "original_terminated": len(terminated),
        "new_instances": sorted(r["instance_id"] for r in after["instances"] if r["instance_id"] not in original),
        "old_instances_left": old_left,
        "instances_after": after["count"],
        "in_service_after": after["in_service"],
        "desired_after": after["desired"],
        "oldest_age_after": after["oldest_age_seconds"],
        "duration_seconds": duration,
        "polls": result.polls,
        "api_calls": aws.calls,
        "lock": released,
        "capacity_restored": capacity_note,
        "reason": reason or None,
    }
    counts = (f"replaced {summary['replaced']}, abandoned {summary['abandoned']}, in service "
              f"{summary['in_service_after']}/{after['count']}, oldest "
              f"{format_duration(before['oldest_age_seconds'])} -> {format_duration(after['oldest_age_seconds'])}, "
              f"{format_duration(duration)}")
    if ok:
        summary["comment"] = f"Rebuilt {target.group}: {counts}."
        reporter.event("finished", summary["comment"], **_event_summary(summary))
        return summary
    if not watched["settled"] or lost:
        serving = "Instances in service now: " + f"{after['in_service']}/{after['count']}."
    elif not terminated:
        serving = "No original instance had been terminated: the instances in service were left serving."
    else:
        serving = (f"{len(terminated)} of the {len(original)} original instance(s) had been terminated before the "
                   f"update stopped ({', '.join(terminated)}); {after['in_service']} instance(s) are in service now"
                   + (" on the previous launch version" if status and "ROLLBACK_COMPLETE" in status else "") + ".")
    if capacity_note:
        serving += f" Capacity: {capacity_note}."
    summary["comment"] = f"Rebuild of {target.group} failed: {reason}. {counts}. {serving}"
    reporter.event("failed", summary["comment"], failed_at="watch", **_event_summary(summary))
    return summary


def _adopt(aws: AWS, target: Target, options: RebuildOptions, plan: sched.Plan, assessment: lk.Assessment,
           before: dict[str, Any], cache: dict[str, datetime], reporter: Reporter, cycle_id: str,
           sleep: Callable[[float], Any], monotonic: Callable[[], float], t0: float) -> dict[str, Any]:
    """Take over an interrupted cycle whose update still runs: re-own its lock, watch it to its end."""
    old = assessment.lock
    assert old is not None
    strategy = old.strategy if old.strategy in ("cloudformation", "instance_refresh") else options.strategy
    options = replace(options, strategy=strategy)
    op_started = old.started or aws.server_time()
    original = {r["instance_id"] for r in before["instances"]
                if r["launch_time"] and datetime.fromisoformat(r["launch_time"]) < op_started}
    lock_value = lk.make_value(cycle_id, op_started, strategy, old.operation)
    lk.write(aws, target.group, lock_value)
    why = "its owner process is gone" if old.owner_dead() else "takeover=True"
    reporter.event("adopted", f"took over cycle {old.cycle_id} (owner {old.owner}, {why}); its update is "
                   f"{assessment.op_status}: watching it to its end", adopted=assessment.as_dict(aws.server_time()))
    base = {
        "group": target.group, "stack": target.stack, "strategy": strategy, "cycle_id": cycle_id,
        "adopted_cycle": old.cycle_id, "instances_before": len(original),
        "oldest_age_before": before["oldest_age_seconds"], "desired_before": before["desired"],
        "preflight": {"warnings": [], "policy_fixed": False}, "plan": plan.as_dict(),
        "interrupted_cycle": assessment.message, "kept_capacity": None,
    }
    trigger_t = monotonic()
    watched = _watch_to_end(aws, target, options, plan, original, reporter, sleep, monotonic, op_started,
                            old.operation, lock_value)
    summary = _finish(aws, target, options, plan, base, watched, original, before, cache, reporter, op_started, t0,
                      trigger_t, lock_value, monotonic)
    summary["comment"] = f"Adopted interrupted cycle {old.cycle_id} ({why}). " + summary["comment"]
    return summary


def _event_summary(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("result", "status", "outcome", "replaced", "abandoned", "abandoned_instances", "launched",
            "original_terminated", "in_service_after", "oldest_age_before", "oldest_age_after", "duration_seconds",
            "reason")
    return {k: summary.get(k) for k in keys}
