"""The rebuild's promises on localcloud: capacity kept, one cycle at a time (a 20-trial race), a killed cycle
recovered, the final outcome after a deadline, rebuild.unlock, and 14 simulated days with no instance older
than max_age in spite of splay, a 3 h outage, restarts and a failed cycle."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest

from localcloud import LocalCloud
from phoenix.rebuild import lock as lk
from phoenix.rebuild.cycle import run_cycle
from phoenix.rebuild.errors import CycleInProgress, PreflightFailed
from phoenix.rebuild.options import options_from
from phoenix.rebuild.status import report
from phoenix.rebuild.target import resolve
from tests.integration.test_rebuild_localcloud import (CREDS, FAST, TEMPLATE, Events, adapter, in_service,
                                                       make_fleet, wait_until)
# the same module-scoped localcloud, provisioner, clients and dummy credentials (one set per module)
from tests.integration.test_rebuild_localcloud import (aws_clients, aws_env, cloud, provisioner,  # noqa: F401
                                                       salt_local)

DAY = 86400.0


def group_of(aws_clients, group: str) -> dict[str, Any]:
    return aws_clients["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
        "AutoScalingGroups"][0]


def tags(aws_clients, group: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in group_of(aws_clients, group).get("Tags", [])}


# -- 3. capacity -----------------------------------------------------------------------------------
def test_scaled_out_group_keeps_its_capacity_through_the_rebuild(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients, size=3, min_in_service=2)  # DesiredCapacity 3, MaxSize 6
    asg = aws_clients["autoscaling"]
    asg.set_desired_capacity(AutoScalingGroupName=fleet["group"], DesiredCapacity=5)  # scaled out after create
    wait_until(lambda: len(in_service(aws_clients, fleet["group"])) == 5, what="5 InService")
    asg.create_or_update_tags(Tags=[{"ResourceId": fleet["group"], "ResourceType": "auto-scaling-group",
                                     "Key": "owner", "Value": "ops", "PropagateAtLaunch": False}])
    dry = run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True, dry_run=True)
    assert dry["kept_capacity"] == {"DesiredCapacity": "5"} and "DesiredCapacity=5" in dry["comment"]
    start = cloud.clock.now()
    summary = run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True)
    assert summary["result"] is True and summary["replaced"] == 5, summary
    assert summary["desired_before"] == 5 and summary["desired_after"] == 5
    after = [e for e in cloud.timeline(fleet["group"]) if e["time"] > start]
    assert after and min(e["desired"] for e in after) >= 5  # never scaled in, not even for a moment
    # the update left the tags it does not declare (an operator's; Phoenix's history), and released the lock
    now_tags = tags(aws_clients, fleet["group"])
    assert now_tags["owner"] == "ops" and "phoenix:rebuild:history" in now_tags and lk.LOCK_TAG not in now_tags


def test_template_that_hard_codes_a_smaller_size_is_refused_by_name(cloud, provisioner, aws_clients):
    cloud.reset()
    provisioner.mode, provisioner.plan = "continue", []
    body = TEMPLATE.replace("DesiredCapacity: !Ref DesiredCapacity", "DesiredCapacity: 2")
    params = {"RebuildTimestamp": "initial", "MinSize": "1", "MaxSize": "8", "DesiredCapacity": "2"}
    cfn = aws_clients["cloudformation"]
    cfn.create_stack(StackName="web", TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
    group = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="web")["Stacks"][0]["Outputs"]
             }["GroupName"]
    provisioner.group = group
    aws_clients["autoscaling"].set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=4)
    wait_until(lambda: len(in_service(aws_clients, group)) == 4, what="4 InService")
    with pytest.raises(PreflightFailed) as info:
        run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True, dry_run=True)
    (problem,) = [p for p in info.value.problems if p["code"] == "would_shrink"]
    assert "resource WebGroup hard-codes DesiredCapacity: 2; the group has 4" in problem["message"]
    assert group_of(aws_clients, group)["DesiredCapacity"] == 4


# -- 2. the lock -----------------------------------------------------------------------------------
def test_lock_race_twenty_trials(cloud, provisioner, aws_clients):
    """Two cycles started together, 20 times (10 per strategy): AWS accepts exactly one update; the loser
    changes nothing of the winner's; the winner's lock is in place from its trigger to its release."""
    fleet = make_fleet(cloud, provisioner, aws_clients, size=1, min_in_service=0)  # one instance: quick trials
    run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True)  # set the policy once
    outcomes = []
    for trial in range(20):
        strategy = "cloudformation" if trial % 2 == 0 else "instance_refresh"
        opts = options_from(FAST, {"strategy": strategy, "min_healthy_percentage": 50})
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]
        events = [Events(), Events()]
        seen: list[str | None] = []
        stop = threading.Event()

        def watch_lock() -> None:
            while not stop.is_set():
                seen.append(tags(aws_clients, fleet["group"]).get(lk.LOCK_TAG))
                time.sleep(0.05)

        def one(i: int) -> None:
            aws = adapter(cloud)
            barrier.wait()
            try:
                results[i] = run_cycle(aws, opts, group=fleet["group"], emit=events[i])
            except CycleInProgress as exc:
                results[i] = exc

        monitor = threading.Thread(target=watch_lock)
        monitor.start()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)  # a hung cycle still fails below (its result stays None)
        stop.set()
        monitor.join()
        winners = [r for r in results if isinstance(r, dict)]
        losers = [r for r in results if isinstance(r, CycleInProgress)]
        both_ran = len(winners) == 2
        assert len(winners) == 1 and len(losers) == 1, (trial, results)
        win = winners[0]
        assert win["result"] is True, win
        assert "changed nothing" in str(losers[0]) or "already running" in str(losers[0])
        loser_events = events[results.index(losers[0])]
        assert "lock/acquired" not in loser_events.stages() and "triggered" not in loser_events.stages()
        values = [v for v in seen if v is not None]
        held = {lk.parse(v).cycle_id for v in values}
        assert held == {win["cycle_id"]}, (trial, held)
        # from the first sample that shows the lock to the last, it never disappeared: never without its lock
        first, last = seen.index(values[0]), len(seen) - 1 - seen[::-1].index(values[-1])
        lost = any(v is None for v in seen[first:last + 1])
        assert not lost, trial
        assert win["lock"] == "released" and lk.LOCK_TAG not in tags(aws_clients, fleet["group"])
        outcomes.append({"trial": trial, "strategy": strategy, "both_ran": both_ran, "winner_lost_lock": lost})
    print("lock race:", json.dumps({"trials": len(outcomes), "both_ran": sum(o["both_ran"] for o in outcomes),
                                    "winner_lost_lock": sum(o["winner_lost_lock"] for o in outcomes)}))


KILLABLE = """
import json, sys
from phoenix.aws import AWS, settings_from
from phoenix.rebuild.cycle import run_cycle
from phoenix.rebuild.options import options_from
aws = AWS(settings_from({"endpoint_url": sys.argv[1], "region": "us-east-1", "max_attempts": 2}))
run_cycle(aws, options_from({"poll_initial": 0.1, "poll_max": 0.5}), stack="web", fix_policy=True)
"""


def _start_killable(cloud) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", KILLABLE, cloud.endpoint], env={**os.environ, **CREDS},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_cycle_is_adopted_by_the_next_call(cloud, provisioner, aws_clients, salt_local):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.gate.clear()  # the update stays in progress
    proc = _start_killable(cloud)
    try:
        wait_until(lambda: lk.LOCK_TAG in tags(aws_clients, fleet["group"]), timeout=60, what="the lock")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed = lk.parse(tags(aws_clients, fleet["group"])[lk.LOCK_TAG])
        assert killed.owner.endswith(f":{proc.pid}")
        _, status, _ = salt_local(cloud, "rebuild.status", "stack=web")
        assert status["lock"]["cycle_id"] == killed.cycle_id and status["lock"]["state"] == "running"
        assert status["lock"]["age_seconds"] >= 0 and status["lock"]["owner"] == killed.owner
        rc, _, err = salt_local(cloud, "rebuild.unlock", "stack=web", check=False)
        assert rc != 0 and "Refused" in err and "is running" in err
    except BaseException:
        provisioner.gate.set()
        raise
    # the next call adopts the killed cycle; only then are the update's new instances let through, so the
    # adopter sees them replace the old ones however slow the machine is
    events, adopted = Events(), {}
    adopter = threading.Thread(target=lambda: adopted.update(summary=run_cycle(
        adapter(cloud), options_from(FAST), stack="web", emit=events)))
    adopter.start()
    try:
        wait_until(lambda: "adopted" in events.stages(), timeout=300, what="the adoption")
    finally:
        provisioner.gate.set()
    adopter.join(timeout=900)
    summary = adopted["summary"]
    assert summary["adopted_cycle"] == killed.cycle_id and "adopted" in events.stages()
    # the killed cycle had already replaced some: the adopter sees the rest go; none older than the update stays
    assert summary["result"] is True and summary["replaced"] >= 1 and summary["old_instances_left"] == [], summary
    assert len(in_service(aws_clients, fleet["group"])) == 4
    assert "owner process is gone" in summary["comment"]
    assert lk.LOCK_TAG not in tags(aws_clients, fleet["group"])


def test_killed_cycle_whose_update_ended_is_reported_and_the_next_cycle_runs(cloud, provisioner, aws_clients,
                                                                             salt_local):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.gate.clear()
    proc = _start_killable(cloud)
    try:
        wait_until(lambda: lk.LOCK_TAG in tags(aws_clients, fleet["group"]), timeout=60, what="the lock")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        provisioner.gate.set()
    cfn = aws_clients["cloudformation"]
    wait_until(lambda: cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE",
               what="the orphaned update to finish")
    assert lk.LOCK_TAG in tags(aws_clients, fleet["group"])  # nobody released it
    # ops can see it and remove it; here the next cycle does it itself
    rc, out, _ = salt_local(cloud, "rebuild.unlock", "stack=web", "test=True")
    assert rc == 0 and out["would_remove"] is True and "Would remove the lock" in out["comment"]
    summary = run_cycle(adapter(cloud), options_from(FAST), stack="web")
    assert summary["result"] is True and "was interrupted" in summary["interrupted_cycle"]
    assert "UPDATE_COMPLETE" in summary["interrupted_cycle"]
    assert lk.LOCK_TAG not in tags(aws_clients, fleet["group"])


def test_unlock_refuses_a_running_update_and_removes_an_ended_one(cloud, provisioner, aws_clients, salt_local):
    fleet = make_fleet(cloud, provisioner, aws_clients, size=2, min_in_service=1)
    stale = lk.make_value("20260101T000000Z-dead00", datetime(2026, 1, 1, tzinfo=timezone.utc), "cloudformation",
                          "2026-01-01T00:00:00Z/dead00", owner="other-host:1")
    lk.write(adapter(cloud), fleet["group"], stale)
    rc, out, _ = salt_local(cloud, "rebuild.unlock", "stack=web")
    assert rc == 0 and out["removed"] is True and "20260101T000000Z-dead00" in out["comment"]
    assert lk.LOCK_TAG not in tags(aws_clients, fleet["group"])
    rc, out, _ = salt_local(cloud, "rebuild.unlock", "stack=web")
    assert rc == 0 and out["removed"] is False and "no cycle lock" in out["comment"]


# -- 4. the final outcome after a deadline -------------------------------------------------------------
def test_deadline_reports_the_rollbacks_final_outcome(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.plan = ["ignore"]  # nobody answers the first replacement: the update cannot progress
    summary = run_cycle(adapter(cloud), options_from(FAST, {"deadline": 2, "rollback_wait": 120}), stack="web",
                        fix_policy=True)
    assert summary["result"] is False and summary["outcome"] == "deadline" and summary["settled"] is True
    assert summary["status"] == "UPDATE_ROLLBACK_COMPLETE"
    assert "the update ended UPDATE_ROLLBACK_COMPLETE" in summary["reason"]
    assert summary["lock"] == "released" and summary["in_service_after"] == 4
    assert summary["original_terminated"] == 1 and "1 of the 4 original instance(s)" in summary["comment"]


def test_deadline_with_a_rollback_still_running_says_how_to_follow_it(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.gate.clear()
    try:
        summary = run_cycle(adapter(cloud), options_from(FAST, {"deadline": 2, "rollback_wait": 1}), stack="web",
                            fix_policy=True)
    finally:
        provisioner.gate.set()
    assert summary["settled"] is False and "the rollback is still running" in summary["reason"]
    assert "salt-call rebuild.status stack=web" in summary["reason"]
    assert "describe-stack-events --stack-name web" in summary["reason"]
    cfn = aws_clients["cloudformation"]
    wait_until(lambda: cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE",
               what="the rollback")
    assert len(in_service(aws_clients, fleet["group"])) == 4


# -- 1. fourteen simulated days ----------------------------------------------------------------------
class VirtualProvisioner:
    """Answers LAUNCHING hooks in virtual time: CONTINUE 1-3 min after Pending:Wait, or ABANDON while
    ``abandon_next`` > 0 (a broken launch version). Runs as a localcloud tick hook, lock held."""

    def __init__(self, cloud: LocalCloud, rnd: random.Random) -> None:
        self.cloud = cloud
        self.rnd = rnd
        self.due: dict[str, tuple[float, str]] = {}
        self.abandon_next = 0

    def __call__(self) -> None:
        fleet = self.cloud.fleet
        now = self.cloud.clock.now()
        for rec in list(fleet.records.values()):
            if rec.state != "Pending:Wait" or "provision" not in rec.tokens:
                continue
            if rec.instance_id not in self.due:
                result = "CONTINUE"
                if self.abandon_next > 0:
                    self.abandon_next -= 1
                    result = "ABANDON"
                self.due[rec.instance_id] = (now + self.rnd.uniform(60, 180), result)
            when, result = self.due[rec.instance_id]
            if now >= when:
                fleet.complete(rec.group, "provision", result, instance_id=rec.instance_id)


def test_fourteen_days_no_instance_older_than_max_age(cloud, provisioner, tmp_path):
    """Production settings (max_age 24h, check hourly + up to 5 min splay, margin 6h, derived deadline) on
    localcloud's clock for 14 days: checks drift by Salt's splay, the master is down for 3 h right when a
    cycle falls due, it restarts twice (run_on_start checks at once), and one cycle fails (its first
    replacement is abandoned: the abandon budget cancels it and it rolls back). The oldest age any instance
    reaches stays under max_age."""
    seed = int(os.environ.get("PHOENIX_SIM_SEED", "20261201"))
    rnd = random.Random(seed)
    # production settings for everything the promise depends on (max_age, check interval, splay, margin,
    # derived deadline, abandon budget); polling 10 s..60 s instead of 2 s..30 s only to save real time:
    # slower polling notices the end of a cycle later, which can only make instances older
    opts = options_from({"poll_initial": 10, "poll_max": 60})
    cloud.reset()
    provisioner.mode, provisioner.plan = "ignore", []  # the virtual-time provisioner answers instead
    clock = cloud.clock
    start = clock.now()
    boot = cloud.boot_seconds
    cloud.boot_seconds = 30
    virtual = VirtualProvisioner(cloud, rnd)
    cloud.tick_hooks.append(virtual)
    try:
        cfn = boto3.client("cloudformation", endpoint_url=cloud.endpoint, region_name="us-east-1")
        params = {"RebuildTimestamp": "initial", "MinSize": "1", "MaxSize": "8", "DesiredCapacity": "4",
                  "RollingMaxBatchSize": "1", "RollingMinInstancesInService": "3", "HookHeartbeatTimeout": "900"}
        cfn.create_stack(StackName="web", TemplateBody=TEMPLATE, Capabilities=["CAPABILITY_IAM"],
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
        group = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="web")["Stacks"][0]
                 ["Outputs"]}["GroupName"]
        while sum(r["state"] == "InService" for r in cloud.instances(group)) < 4:
            cloud.advance(10)
            time.sleep(0.02)
        aws = adapter(cloud)

        def sleep(seconds: float) -> None:  # the cycle's polls wait in virtual time
            cloud.advance(seconds)
            time.sleep(0.025)  # let localcloud's background update take its next step

        end = start + 14 * DAY
        restarts = sorted(rnd.uniform(start + DAY, end - DAY) for _ in range(2))
        outage: tuple[float, float] | None = None
        fail_from = start + 6 * DAY
        failed_done = False
        log: list[dict[str, Any]] = []
        checks = 0
        spent = {"checks": 0.0, "cycles": 0.0, "advance": 0.0}
        t = clock.now()
        while t < end:
            if outage is None or not (outage[0] <= t < outage[1]):
                checks += 1
                real = time.monotonic()
                target = resolve(aws, stack="web")
                rep = report(aws, target, opts)
                spent["checks"] += time.monotonic() - real
                due = rep["schedule"]["due"] or rep["past_max_age"]
                if due and outage is None and t > start + 3 * DAY:
                    outage = (t, t + 3 * 3600)  # the master goes down right when the cycle falls due
                    log.append({"t": t, "event": "outage"})
                elif due:
                    if not failed_done and t >= fail_from:
                        virtual.abandon_next = 1
                        failed_done = True
                    real = time.monotonic()
                    summary = run_cycle(aws, opts, stack="web", fix_policy=True, sleep=sleep, monotonic=clock.now)
                    spent["cycles"] += time.monotonic() - real
                    log.append({"t": t, "event": "cycle", "result": summary["result"], "outcome": summary["outcome"],
                                "duration": summary["duration_seconds"], "deadline": opts.deadline,
                                "lead": rep["schedule"]["lead_seconds"]})
            now = clock.now()
            nxt = max(now, t) + opts.check_interval + rnd.uniform(0, opts.check_splay)
            if outage is not None and outage[0] <= nxt < outage[1]:
                nxt = outage[1] + rnd.uniform(0, 120)  # back up: run_on_start checks at once
            for r in restarts:
                if now < r < nxt:
                    nxt = r  # a restart: run_on_start checks at once, and the schedule restarts from there
                    log.append({"t": r, "event": "restart"})
            real = time.monotonic()
            cloud.advance(max(0.0, nxt - clock.now()))
            spent["advance"] += time.monotonic() - real
            t = nxt
        final = clock.now()
        records = cloud.instances(group)
    finally:
        cloud.tick_hooks.remove(virtual)
        cloud.boot_seconds = boot
        provisioner.mode = "continue"
        cloud.reset()
    ages = [((r["ended_at"] or final) - r["launched_at"]) for r in records if r["end_reason"] != "abandoned"]
    max_seen = max(ages)
    cycles = [e for e in log if e["event"] == "cycle"]
    result = {"seed": seed, "days": 14, "checks": checks, "cycles": len(cycles),
              "failed_cycles": sum(not c["result"] for c in cycles), "restarts": len(restarts),
              "outage_hours": 3, "max_instance_age_hours": round(max_seen / 3600, 2),
              "max_age_hours": opts.max_age / 3600, "margin_hours": round((opts.max_age - max_seen) / 3600, 2),
              "cycle_minutes": [round(c["duration"] / 60, 1) for c in cycles],
              "real_seconds": {k: round(v, 1) for k, v in spent.items()}}
    (tmp_path / "promise.json").write_text(json.dumps(result, indent=2))
    print("14-day simulation:", json.dumps(result))
    assert any(e["event"] == "outage" for e in log) and failed_done
    assert result["failed_cycles"] >= 1 and any(c["outcome"] == "abandon_budget" for c in cycles)
    assert max_seen < opts.max_age, result
