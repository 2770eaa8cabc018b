"""The guarantee's arithmetic (schedule, history), the template reader, capacity checks and the abandon budget."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from phoenix.rebuild import history as hist
from phoenix.rebuild import schedule as sched
from phoenix.rebuild import template as tpl
from phoenix.rebuild.options import RebuildOptions, options_from
from phoenix.rebuild.preflight import Facts, capacity_problems, check, desired_override
from phoenix.rebuild.target import Target
from phoenix.rebuild.watch import InstanceView, Snapshot, Tracker, outcome

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOOK = {"LifecycleHookName": "p", "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "DefaultResult": "ABANDON", "HeartbeatTimeout": 900}

YAML = """
Parameters:
  RebuildTimestamp: {Type: String}
  DesiredCapacity: {Type: Number, Default: 2}
  Size: {Type: Number}
  Batch: {Type: Number}
Resources:
  WebGroup:
    Type: AWS::AutoScaling::AutoScalingGroup
    UpdatePolicy:
      AutoScalingRollingUpdate:
        MaxBatchSize: !Ref Batch
        MinInstancesInService: 1
        PauseTime: PT2M
    Properties:
      MinSize: 1
      MaxSize: !Ref Size
      DesiredCapacity: !Ref DesiredCapacity
      Tags:
        - Key: Name
          Value: !Sub "${AWS::StackName}-web"
"""


def test_yaml_template_with_short_forms_is_read():
    doc = tpl.parse(YAML)
    group = tpl.group_template(doc, "WebGroup", {"Batch": "2", "Size": "8", "DesiredCapacity": "2"})
    assert group.found and group.rolling and group.max_batch == 2 and group.min_in_service == 1
    assert group.pause == 120 and group.pause_problem is None
    assert (group.desired.kind, group.desired.param, group.desired.value) == ("param", "DesiredCapacity", "2")
    assert group.max_size.value == "8" and group.min_size.kind == "literal"
    assert tpl.references(doc, "Size") == ["Resources.WebGroup.Properties.MaxSize"]


@pytest.mark.parametrize("pause,problem", [("PT1H", None), ("PT61M", "longer than"), ("5 minutes", "ISO 8601"),
                                           ("PT", "ISO 8601")])
def test_pause_time_validation(pause, problem):
    doc = {"Resources": {"G": {"Type": "AWS::AutoScaling::AutoScalingGroup", "UpdatePolicy": {
        "AutoScalingRollingUpdate": {"PauseTime": pause}}, "Properties": {}}}}
    found = tpl.group_template(doc, "G", {}).pause_problem
    assert (found is None) if problem is None else (problem in found)


def _target(desired=5, params=None):
    return Target(group="g", group_logical_id="WebGroup", stack="web", stack_status="UPDATE_COMPLETE",
                  parameters=params or {"RebuildTimestamp": "x", "DesiredCapacity": "2", "Size": "8", "Batch": "1"},
                  group_data={"DesiredCapacity": desired, "MinSize": 1, "MaxSize": 8, "Instances": [], "Tags": []})


def test_scaled_out_group_keeps_its_size_through_the_parameter():
    doc = tpl.parse(YAML)
    t = _target()
    group = tpl.group_template(doc, "WebGroup", t.parameters)
    assert capacity_problems(group, doc, t, RebuildOptions()) == []
    assert desired_override(group, doc, t, RebuildOptions()) == {"DesiredCapacity": "5"}
    assert desired_override(group, doc, t, RebuildOptions(keep_capacity=False)) == {}
    # clamped to the template's MaxSize
    t9 = _target(desired=9)
    problems = capacity_problems(group, doc, t9, RebuildOptions())
    assert [p["property"] for p in problems] == ["MaxSize"] and "MaxSize 8" in problems[0]["message"]


def test_hard_coded_or_shared_desired_capacity_is_named():
    doc = tpl.parse(YAML.replace("DesiredCapacity: !Ref DesiredCapacity", "DesiredCapacity: 2"))
    t = _target()
    group = tpl.group_template(doc, "WebGroup", t.parameters)
    (problem,) = capacity_problems(group, doc, t, RebuildOptions())
    assert problem["code"] == "would_shrink" and "hard-codes DesiredCapacity: 2" in problem["message"]
    assert "stack web's template, resource WebGroup" in problem["message"]
    shared = tpl.parse(YAML.replace("MinSize: 1", "MinSize: !Ref DesiredCapacity"))
    group = tpl.group_template(shared, "WebGroup", t.parameters)
    (problem,) = capacity_problems(group, shared, t, RebuildOptions())
    assert "also used by Resources.WebGroup.Properties.MinSize" in problem["message"]
    assert desired_override(group, shared, t, RebuildOptions()) == {}
    ignore = tpl.parse(YAML.replace("UpdatePolicy:\n", "UpdatePolicy:\n      AutoScalingScheduledAction:\n"
                                    "        IgnoreUnmodifiedGroupSizeProperties: true\n"))
    group = tpl.group_template(ignore, "WebGroup", t.parameters)
    assert group.ignore_unmodified_size and capacity_problems(group, ignore, t, RebuildOptions()) == []


def test_preflight_reports_would_shrink_and_bad_pause():
    doc = tpl.parse(YAML.replace("DesiredCapacity: !Ref DesiredCapacity", "DesiredCapacity: 2")
                    .replace("PT2M", "PT2H"))
    t = _target()
    facts = Facts(t, hooks=[HOOK], refreshes=[], now=NOW, template_doc=doc,
                  template=tpl.group_template(doc, "WebGroup", t.parameters),
                  policy_body=json.dumps({"Statement": [{"Effect": "Allow", "Action": "Update:*", "Principal": "*",
                                                         "Resource": "LogicalResourceId/WebGroup"}]}))
    codes = [p["code"] for p in check(facts, RebuildOptions())["problems"]]
    assert "would_shrink" in codes and "bad_pause_time" in codes


# -- history ------------------------------------------------------------------------------------------
def test_history_round_trip_and_limit():
    entries = []
    for i in range(10):
        value = hist.add(entries, hist.Entry(1_700_000_000 + i, 600 + i, 3, 6, "ok"))
        entries = hist.parse(value)
    assert len(entries) == hist.KEEP and len(value) <= 256 and entries[-1].seconds == 609
    assert hist.parse("junk 1:2:3:4:weird 5:6:7") == []


def test_per_batch_estimate_from_history_or_prior():
    assert hist.per_batch([], 1020)[0] == 1020
    entries = [hist.Entry(1, 1200, 2, 4, "ok"), hist.Entry(2, 9000, 3, 6, "failed")]
    value, source = hist.per_batch(entries, 1020)
    assert value == 600 * hist.SAFETY and "slowest" in source  # failed cycles do not count
    fast = [hist.Entry(1, 30, 3, 3, "ok")]
    assert hist.per_batch(fast, 1020)[0] == 340  # floored at a third of the prior


# -- the plan and the due rule ----------------------------------------------------------------------
def test_plan_batches_for_each_strategy():
    opts = RebuildOptions()
    plan = sched.make_plan(opts, 6, 2, 60, [HOOK], [])
    assert (plan.batch_size, plan.batches) == (2, 3)
    assert plan.per_batch == 900 + 60 + hist.LAUNCH_ALLOWANCE and plan.expected == 3 * plan.per_batch
    assert plan.deadline == 3 * plan.per_batch + sched.DEADLINE_SLACK and "hook timeout" in plan.deadline_source
    ir = RebuildOptions(strategy="instance_refresh")
    assert sched.batch_size("instance_refresh", 6, 1, 90) == 1  # AWS: one at a time when 90% leaves none
    assert sched.batch_size("instance_refresh", 20, 1, 90) == 2
    assert sched.make_plan(ir, 6, 1, 0, [HOOK], []).batches == 6
    assert sched.make_plan(RebuildOptions(deadline=7200.0), 6, 1, 0, [HOOK], []).deadline == 7200


def test_deadline_grows_for_a_batch_one_fleet_of_twelve():
    """The issue's case: 12 instances, batch 1, ~10 min provisioning: the old fixed 1 h cancelled it daily."""
    history = [hist.Entry(1, 12 * 600, 12, 12, "ok")]
    plan = sched.make_plan(RebuildOptions(), 12, 1, 0, [HOOK], history)
    assert plan.deadline >= 12 * 1020 > 3600 and plan.expected >= 12 * 600


def test_due_rule_and_next_due_time():
    opts = RebuildOptions()  # 24h, check 1h + 5m splay, margin 6h
    plan = sched.make_plan(opts, 4, 1, 0, [HOOK], [hist.Entry(1, 1200, 4, 4, "ok")])
    lead = plan.lead
    assert lead == 3600 + 300 + plan.expected + 6 * 3600
    launch = NOW - timedelta(seconds=24 * 3600 - lead - 1)
    assert not sched.due(opts, plan, launch, NOW)["due"]
    assert sched.due(opts, plan, launch - timedelta(seconds=2), NOW)["due"]
    info = sched.due(opts, plan, launch, NOW)
    assert info["due_at"] == (launch + timedelta(seconds=24 * 3600 - lead)).isoformat()
    assert info["due_in_seconds"] == 1 and "margin 6h" in info["reason"]
    tight = RebuildOptions(max_age=3600.0)
    assert "warning" in sched.due(tight, sched.make_plan(tight, 4, 1, 0, [HOOK], []), launch, NOW)


def test_new_settings_parse_from_pillar():
    opts = options_from({"check_interval": "30m", "check_splay": "2m", "margin": "4h", "batch_estimate": "10m",
                         "max_abandons": "3", "max_abandons_first_batch": 1, "keep_capacity": "false",
                         "rollback_wait": "1h", "deadline": "3h"})
    assert (opts.check_interval, opts.check_splay, opts.margin, opts.batch_estimate) == (1800, 120, 14400, 600)
    assert (opts.max_abandons, opts.max_abandons_first_batch, opts.keep_capacity) == (3, 1, False)
    assert opts.deadline == 10800 and opts.rollback_wait == 3600 and RebuildOptions().deadline is None


# -- a model of the schedule: the rule holds under splay, outages, restarts and a failed cycle --------------
def _simulate(seed: int, days: int = 14) -> dict:
    """Pure model: checks every hour + splay (Salt: next = run + interval + fresh splay), a 3 h outage, two
    restarts (run_on_start: an extra check), one failed cycle (abandoned at its first batch, rolled back),
    cycles that take 4 batches x 10-20 min. Returns the oldest age any instance reached."""
    import random

    rnd = random.Random(seed)
    opts = RebuildOptions()
    day = 86400.0
    t = 0.0
    fleet = [0.0] * 4  # launch times
    history: list[hist.Entry] = []
    outage_start = rnd.uniform(1 * day, days * day - 4 * 3600)
    outage = (outage_start, outage_start + 3 * 3600)
    restarts = sorted(rnd.uniform(0, days * day) for _ in range(2))
    fail_after = rnd.uniform(2 * day, 10 * day)
    failed = False
    max_age = 0.0
    while t < days * day:
        max_age = max(max_age, t - min(fleet))
        if not (outage[0] <= t < outage[1]):
            plan = sched.make_plan(opts, 4, 1, 0, [HOOK], history)
            oldest = datetime.fromtimestamp(min(fleet), timezone.utc)
            if sched.due(opts, plan, oldest, datetime.fromtimestamp(t, timezone.utc))["due"]:
                if not failed and t >= fail_after:
                    failed = True
                    took = rnd.uniform(600, 1500) * 2  # first batch abandoned + the rollback
                    history.append(hist.Entry(int(t + took), int(took), 4, 4, "cancelled"))
                    max_age = max(max_age, t + took - min(fleet))
                    t += took
                else:
                    start = t
                    for i in range(4):  # batch by batch: the oldest goes first
                        t += rnd.uniform(600, 1200)
                        max_age = max(max_age, t - min(fleet))
                        fleet[fleet.index(min(fleet))] = t
                    history.append(hist.Entry(int(t), int(t - start), 4, 4, "ok"))
        nxt = t + opts.check_interval + rnd.uniform(0, opts.check_splay)
        if outage[0] <= nxt < outage[1]:
            nxt = outage[1] + rnd.uniform(0, 60)  # the master comes back: run_on_start checks at once
        for r in restarts:
            if t < r < nxt:
                nxt = r
        t = nxt
    return {"max_age": max_age, "history": history}


@pytest.mark.parametrize("seed", range(40))
def test_model_of_the_schedule_never_lets_an_instance_pass_max_age(seed):
    out = _simulate(seed)
    assert out["max_age"] < RebuildOptions().max_age, out["max_age"]
    assert any(e.outcome == "cancelled" for e in out["history"])


# -- watch: Baking and the abandon budget --------------------------------------------------------------
def test_baking_is_still_running():
    assert outcome("instance_refresh", Snapshot("Baking")) is None
    assert outcome("instance_refresh", Snapshot("Successful")) == "succeeded"


def _snap(states, percent=None):
    return Snapshot("UPDATE_IN_PROGRESS", instances={i: InstanceView(i, s) for i, s in states.items()},
                    percent=percent)


def test_abandon_budget_first_batch_and_cycle():
    t = Tracker(original={"o1", "o2"}, max_abandons=1, max_abandons_first_batch=0)
    t.update(_snap({"o1": "InService", "o2": "InService", "n1": "Pending:Wait"}))
    t.update(_snap({"o1": "InService", "o2": "InService", "n1": "Terminating"}))
    assert "first batch" in t.over_budget()
    # after the first batch, one abandon is tolerated, the second is not
    t = Tracker(original={"o1", "o2"}, max_abandons=1, max_abandons_first_batch=0)
    t.batches = 1
    t.update(_snap({"o2": "InService", "n1": "InService", "n2": "Terminating"}))
    assert t.over_budget() is None
    t.update(_snap({"o2": "InService", "n1": "InService", "n3": "Terminating"}))
    assert "2 launches abandoned" in t.over_budget()


def test_pillar_example_documents_every_rebuild_setting_and_each_parses():
    """Every RebuildOptions field is in pillar.example (set or commented), and the file's values parse."""
    import re
    from dataclasses import fields
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "pillar.example").read_text()
    section = text[text.index("  rebuild:"):]
    documented = set(re.findall(r"^    (?:# )?([a-z_]+):", section, re.M))
    missing = {f.name for f in fields(RebuildOptions)} - documented
    assert not missing, missing
    names = "|".join(f.name for f in fields(RebuildOptions))
    uncommented = re.sub(rf"^(    )# ((?:{names}): )", r"\1\2", section, flags=re.M)
    values = yaml.safe_load(uncommented)["rebuild"]
    opts = options_from(values)
    assert opts.margin == 6 * 3600 and opts.check_interval == 3600 and opts.deadline == 3 * 3600
