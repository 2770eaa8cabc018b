"""Pure rebuild logic: durations, options, backoff, the watch loop, the tracker, policy analysis, plans."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from phoenix.aws import AWSSettings, PhoenixAWSError, settings_from
from phoenix.rebuild import policy
from phoenix.rebuild.errors import BadRequest
from phoenix.rebuild.options import RebuildOptions, format_duration, options_from, parse_duration
from phoenix.rebuild import lock as lk
from phoenix.rebuild.preflight import Facts, check
from phoenix.rebuild.progress import Reporter, tag
from phoenix.rebuild.status import rows, summarise, version_label
from phoenix.rebuild.target import Target
from phoenix.rebuild.trigger import plan_cloudformation, plan_instance_refresh
from phoenix.rebuild.watch import Backoff, InstanceView, Snapshot, Tracker, outcome, watch

REPO = Path(__file__).resolve().parents[2]


# -- durations / options -------------------------------------------------------------------------
@pytest.mark.parametrize("text,seconds", [
    (90, 90), ("90", 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("1d", 86400), ("1h30m", 5400),
    ("1.5h", 5400), (" 2w ", 1209600), (0, 0),
])
def test_parse_duration_accepts_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "1x", "-5", -1, True, None, "1h30", [1]])
def test_parse_duration_rejects_garbage_naming_the_setting(bad):
    with pytest.raises(BadRequest, match="max_age"):
        parse_duration(bad, "max_age")


@given(hs.integers(min_value=0, max_value=10**7))
def test_format_then_parse_roundtrips(n):
    assert parse_duration(format_duration(n)) == n


def test_options_ignore_target_and_schedule_keys_of_the_pillar_section():
    pillar = {"stack": "web", "stacks": ["web"], "fix_policy": True, "schedule": {"hours": 24}, "max_age": "2h"}
    assert options_from(pillar).max_age == 7200


def test_options_merge_later_sources_win_and_parse_durations():
    opts = options_from({"strategy": "instance_refresh", "max_age": "12h"}, {"max_age": "1h", "poll_max": "10"},
                        {"strategy": None})
    assert opts.strategy == "instance_refresh"
    assert opts.max_age == 3600 and opts.poll_max == 10


@pytest.mark.parametrize("source,match", [
    ({"strategy": "blue_green"}, "unknown strategy"),
    ({"maxage": "1h"}, "unknown rebuild setting 'maxage'"),
    ({"poll_initial": 10, "poll_max": 5}, "poll settings"),
    ({"min_healthy_percentage": 150}, "min_healthy_percentage"),
    ({"cancel_on_deadline": "perhaps"}, "cancel_on_deadline"),
])
def test_options_reject_bad_values_with_the_key_name(source, match):
    with pytest.raises(BadRequest, match=match):
        options_from(source)


def test_aws_settings_merge_and_reject_credentials_and_typos():
    s = settings_from({"region": "eu-west-1", "max_attempts": "3"}, {"endpoint_url": "http://127.0.0.1:1"}, None)
    assert s == AWSSettings(region="eu-west-1", endpoint_url="http://127.0.0.1:1", max_attempts=3)
    assert "127.0.0.1:1" in s.describe()
    with pytest.raises(ValueError, match="credentials are not read"):
        settings_from({"aws_secret_access_key": "hunter2"})
    with pytest.raises(ValueError, match="phoenix:aws:regoin"):
        settings_from({"regoin": "x"})


def test_aws_error_names_action_resource_and_message():
    err = PhoenixAWSError("UpdateStack", "stack web", "Stack is in UPDATE_IN_PROGRESS", "ValidationError",
                          "cloudformation")
    assert str(err) == ("AWS cloudformation:UpdateStack on stack web failed: ValidationError: "
                        "Stack is in UPDATE_IN_PROGRESS")


# -- backoff and the watch loop ------------------------------------------------------------------
def test_backoff_grows_caps_and_resets():
    b = Backoff(initial=1, factor=2, maximum=5)
    assert list(b.delays(5)) == [1, 2, 4, 5, 5]
    b.reset()
    assert b.next() == 1


@given(hs.floats(0.1, 10), hs.floats(1, 4), hs.floats(10, 100), hs.integers(1, 50))
def test_backoff_never_exceeds_maximum_and_never_shrinks_without_reset(initial, factor, maximum, n):
    delays = list(Backoff(initial, factor, maximum).delays(n))
    assert all(d <= maximum for d in delays)
    assert delays == sorted(delays)


class FakeTime:
    """A clock for the watch loop: sleep advances it instead of waiting."""

    def __init__(self):
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


def _snap(status, **states):
    return Snapshot(status=status, instances={i: InstanceView(i, s) for i, s in states.items()})


def test_watch_follows_a_rolling_replacement_and_counts():
    script = [
        _snap("UPDATE_IN_PROGRESS", a="InService", b="InService"),
        _snap("UPDATE_IN_PROGRESS", a="InService", b="InService", c="Pending:Wait"),
        _snap("UPDATE_IN_PROGRESS", a="Terminating", b="InService", c="InService"),
        _snap("UPDATE_IN_PROGRESS", b="InService", c="InService", d="Pending"),
        _snap("UPDATE_IN_PROGRESS", b="InService", c="InService", d="Pending"),
        _snap("UPDATE_IN_PROGRESS", b="InService", c="InService", d="Pending"),
        _snap("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", c="InService", d="InService"),
        _snap("UPDATE_COMPLETE", c="InService", d="InService"),
    ]
    it = iter(script)
    clock = FakeTime()
    sent = []
    rep = Reporter("g", "s", "cid", emit=lambda t, d: sent.append(t), monotonic=clock.monotonic)
    tracker = Tracker(original={"a", "b"}, reporter=rep)
    res = watch("cloudformation", lambda: next(it), tracker, Backoff(1, 2, 8), deadline=1000,
                sleep=clock.sleep, monotonic=clock.monotonic)
    assert res.outcome == "succeeded" and res.polls == len(script)
    assert tracker.replaced == {"a", "b"} and tracker.in_service == {"c", "d"} and not tracker.abandoned
    assert "phoenix/rebuild/g/instance/replaced" in sent and "phoenix/rebuild/g/instance/in_service" in sent
    # backoff grows while nothing changes (polls 5, 6) and resets after a change
    assert clock.sleeps[:5] == [1, 1, 1, 1, 2]


def test_watch_stops_at_the_deadline_within_one_poll():
    clock = FakeTime()
    tracker = Tracker(original={"a"})
    res = watch("cloudformation", lambda: _snap("UPDATE_IN_PROGRESS", a="InService"), tracker,
                Backoff(1, 2, 30), deadline=20, sleep=clock.sleep, monotonic=clock.monotonic)
    assert res.outcome == "deadline"
    assert clock.t == 20  # the last sleep is cut to the deadline
    assert sum(clock.sleeps) == 20


def test_watch_retries_a_failing_poll_then_gives_up():
    clock = FakeTime()
    script = [OSError("blip"), _snap("UPDATE_IN_PROGRESS", a="InService"), OSError("blip"), OSError("blip"),
              _snap("UPDATE_COMPLETE", b="InService")]

    def fetch():
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    res = watch("cloudformation", fetch, Tracker(original={"a"}), Backoff(1, 2, 8), deadline=100,
                sleep=clock.sleep, monotonic=clock.monotonic)
    assert res.outcome == "succeeded" and res.polls == 2

    def down():
        raise OSError("endpoint down")

    with pytest.raises(OSError, match="endpoint down"):
        watch("cloudformation", down, Tracker(original=set()), Backoff(1, 2, 8), deadline=100,
              sleep=clock.sleep, monotonic=clock.monotonic, max_poll_errors=3)


def test_watch_sends_heartbeats_while_nothing_changes():
    clock = FakeTime()
    sent = []
    rep = Reporter("g", "s", "cid", emit=lambda t, d: sent.append(d), monotonic=clock.monotonic)
    tracker = Tracker(original={"a"}, reporter=rep)
    watch("cloudformation", lambda: _snap("UPDATE_IN_PROGRESS", a="InService"), tracker, Backoff(10, 1, 10),
          deadline=300, sleep=clock.sleep, monotonic=clock.monotonic, heartbeat=60)
    beats = [d for d in sent if d.get("heartbeat")]
    assert 4 <= len(beats) <= 5 and all(b["status"] == "UPDATE_IN_PROGRESS" for b in beats)


def test_tracker_relays_new_stack_events_once_and_counts_batches():
    sent = []
    tracker = Tracker(original={"a"}, reporter=Reporter("g", "s", "c", emit=lambda t, d: sent.append((t, d))))
    events = [{"EventId": "2", "LogicalResourceId": "Group", "ResourceStatus": "UPDATE_IN_PROGRESS",
               "ResourceStatusReason": "Successfully terminated instance(s) [a] (Progress 50%)."},
              {"EventId": "1", "LogicalResourceId": "Group", "ResourceStatus": "UPDATE_IN_PROGRESS",
               "ResourceStatusReason": "Rolling update initiated."}]  # newest first, as AWS lists them
    snap = Snapshot("UPDATE_IN_PROGRESS", instances={"a": InstanceView("a", "InService")}, stack_events=events)
    tracker.update(snap)
    tracker.update(snap)
    stages = [t.rsplit("/", 1)[1] for t, _ in sent]
    assert stages.count("stack_event") == 2 and stages.count("batch") == 1
    assert [d["reason"] for t, d in sent if t.endswith("stack_event")][0] == "Rolling update initiated."
    assert [d for t, d in sent if t.endswith("batch")][0]["percent"] == 50.0


def test_tracker_counts_abandoned_launches_and_rollback():
    tracker = Tracker(original={"a", "b"})
    tracker.update(_snap("UPDATE_IN_PROGRESS", a="InService", b="InService", x="Pending:Wait"))
    tracker.update(_snap("UPDATE_IN_PROGRESS", a="InService", b="InService", x="Terminating"))
    tracker.update(_snap("UPDATE_IN_PROGRESS", a="InService", b="InService", y="Pending:Wait"))
    tracker.update(_snap("UPDATE_ROLLBACK_COMPLETE", a="InService", b="InService"))
    assert tracker.abandoned == {"x", "y"} and not tracker.replaced and not tracker.in_service
    assert outcome("cloudformation", tracker.last) == "failed"
    assert tracker.counts()["remaining_old"] == 2


@pytest.mark.parametrize("strategy,status,expected", [
    ("cloudformation", "UPDATE_COMPLETE", "succeeded"),
    ("cloudformation", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None),
    ("cloudformation", "UPDATE_ROLLBACK_COMPLETE", "failed"),
    ("cloudformation", "UPDATE_ROLLBACK_IN_PROGRESS", None),
    ("instance_refresh", "InProgress", None),
    ("instance_refresh", "Successful", "succeeded"),
    ("instance_refresh", "Cancelled", "failed"),
    ("instance_refresh", "RollbackSuccessful", "failed"),
])
def test_outcome(strategy, status, expected):
    assert outcome(strategy, Snapshot(status=status)) == expected


def test_reporter_tags_payload_and_survives_a_broken_bus():
    def broken(tag_, data):
        raise OSError("bus down")

    rep = Reporter("web-asg", "web", "c1", emit=broken, monotonic=lambda: 5.0)
    data = rep.event("progress", "x", replaced=1)
    assert data["cycle_id"] == "c1" and data["group"] == "web-asg" and data["replaced"] == 1
    assert rep.sent[0][0] == "phoenix/rebuild/web-asg/progress"
    with pytest.raises(ValueError):
        tag("g", "exploded")


# -- status ----------------------------------------------------------------------------------------
def test_status_rows_age_version_and_past_max_age():
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    group = {"AutoScalingGroupName": "g", "LaunchTemplate": {"LaunchTemplateName": "web", "Version": "3"},
             "DesiredCapacity": 2, "MinSize": 2, "MaxSize": 4, "Instances": [
                 {"InstanceId": "i-new", "LifecycleState": "InService",
                  "LaunchTemplate": {"LaunchTemplateName": "web", "Version": "3"}},
                 {"InstanceId": "i-old", "LifecycleState": "InService",
                  "LaunchTemplate": {"LaunchTemplateName": "web", "Version": "2"}},
                 {"InstanceId": "i-lc", "LifecycleState": "Pending:Wait", "LaunchConfigurationName": "lc1"}]}
    launched = {"i-new": now - timedelta(hours=1), "i-old": now - timedelta(hours=25), "i-lc": now}
    r = rows(group, launched, now, max_age=86400)
    assert [x["instance_id"] for x in r] == ["i-old", "i-new", "i-lc"]
    assert r[0]["past_max_age"] and not r[1]["past_max_age"]
    assert r[0]["launch_version"] == "web:2" and r[2]["launch_version"] == "lc:lc1"
    s = summarise(r, group, 86400, now)
    assert s["past_max_age"] == 1 and s["oldest_age_seconds"] == 25 * 3600 and s["in_service"] == 2
    assert s["group_launch_version"] == "web:3"
    assert version_label({}) == "-"


# -- policy ----------------------------------------------------------------------------------------
RESOURCES = [("Group", "AWS::AutoScaling::AutoScalingGroup"), ("LT", "AWS::EC2::LaunchTemplate"),
             ("Db", "AWS::RDS::DBInstance"), ("Queue", "AWS::SQS::Queue")]


def test_policy_none_allows_everything_and_is_reported():
    rep = policy.analyse(None, RESOURCES, ["Group", "LT"])
    assert not rep.ok and rep.others_updatable == ["Db", "Queue"]
    assert "no stack policy" in rep.problems[0]


def test_policy_allow_all_is_reported_with_the_offending_statement():
    allow_all = {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"}
    rep = policy.analyse({"Statement": [allow_all]}, RESOURCES, ["Group", "LT"])
    assert not rep.ok and rep.others_updatable == ["Db", "Queue"] and rep.offending_statements == [allow_all]


def test_policy_allow_all_with_deny_for_others_is_fine():
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "Update:*", "Principal": "*", "NotResource": ["LogicalResourceId/Group",
                                                                                  "LogicalResourceId/LT"]}]}
    assert policy.analyse(doc, RESOURCES, ["Group", "LT"]).ok


def test_policy_condition_on_resource_type_and_wildcards():
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "Update:Modify", "Principal": "*", "Resource": "LogicalResourceId/*",
         "Condition": {"StringEquals": {"ResourceType": ["AWS::AutoScaling::AutoScalingGroup",
                                                          "AWS::EC2::LaunchTemplate"]}}}]}
    assert policy.analyse(doc, RESOURCES, ["Group", "LT"]).ok
    doc["Statement"][0]["Condition"] = {"StringLike": {"ResourceType": ["AWS::*"]}}
    rep = policy.analyse(doc, RESOURCES, ["Group", "LT"])
    assert rep.others_updatable == ["Db", "Queue"]


def test_policy_blocking_the_group_is_reported():
    doc = {"Statement": [{"Effect": "Allow", "Action": "Update:Modify", "Principal": "*",
                          "Resource": "LogicalResourceId/LT"}]}
    rep = policy.analyse(doc, RESOURCES, ["Group", "LT"])
    assert rep.required_blocked == ["Group"] and "would be refused" in rep.problems[0]


def test_recommended_policy_passes_its_own_check_and_matches_the_template(repo):
    rec = policy.recommended(["LT", "Group", "LT"])
    assert policy.analyse(rec, RESOURCES, ["Group", "LT"]).ok
    assert rec["Statement"][0]["Resource"] == ["LogicalResourceId/Group", "LogicalResourceId/LT"]
    import jinja2

    text = (repo / "salt" / "rebuild" / "stack_policy.json").read_text()
    rendered = jinja2.Template(text).render(group="Group", launch="LT")
    assert json.loads(rendered) == rec


@given(hs.lists(hs.sampled_from(["Group", "LT", "Db", "Queue", "*", "G*"]), max_size=4),
       hs.sampled_from(["Allow", "Deny"]), hs.sampled_from(["Update:*", "Update:Modify", "Update:Delete"]))
def test_policy_ok_means_no_other_resource_can_be_updated(resources, effect, action):
    doc = {"Statement": [{"Effect": effect, "Action": action, "Principal": "*",
                          "Resource": [f"LogicalResourceId/{r}" for r in resources]}]}
    rep = policy.analyse(doc, RESOURCES, ["Group", "LT"])
    if rep.ok:
        for lid, rtype in RESOURCES[2:]:
            assert not any(policy.allowed(doc, lid, rtype, a) for a in policy.UPDATE_ACTIONS)


def test_policy_parse_errors():
    assert policy.parse(None) is None and policy.parse("  ") is None
    with pytest.raises(ValueError, match="not valid JSON"):
        policy.parse("{nope")


# -- preflight decisions ---------------------------------------------------------------------------
def _target(**kw):
    t = Target(group="g", group_logical_id="Group", stack="web", stack_status="UPDATE_COMPLETE",
               parameters={"RebuildTimestamp": "1", "ImageId": "ami-1"},
               resources=[{"LogicalResourceId": lid, "ResourceType": rt, "PhysicalResourceId": lid.lower()}
                          for lid, rt in RESOURCES[:2]],
               launch_logical_ids=["LT"])
    for k, v in kw.items():
        setattr(t, k, v)
    return t


HOOK = {"LifecycleHookName": "launch", "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "DefaultResult": "ABANDON"}
GOOD_POLICY = json.dumps(policy.recommended(["Group", "LT"]))
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _codes(result):
    return [p["code"] for p in result["problems"]]


def test_preflight_passes_a_good_stack():
    r = check(Facts(_target(), hooks=[HOOK], refreshes=[], policy_body=GOOD_POLICY, now=NOW), RebuildOptions())
    assert r["ok"], r["problems"]


def test_preflight_refuses_each_problem_with_its_code():
    opts = RebuildOptions()
    assert _codes(check(Facts(_target(stack_status="UPDATE_IN_PROGRESS"), hooks=[HOOK], refreshes=[],
                              policy_body=GOOD_POLICY, now=NOW), opts)) == ["cycle_in_progress"]
    assert _codes(check(Facts(_target(stack_status="UPDATE_ROLLBACK_FAILED"), hooks=[HOOK], refreshes=[],
                              policy_body=GOOD_POLICY, now=NOW), opts)) == ["stack_not_stable"]
    assert _codes(check(Facts(_target(), hooks=[{**HOOK, "DefaultResult": "CONTINUE"}], refreshes=[],
                              policy_body=GOOD_POLICY, now=NOW), opts)) == ["no_launch_hook"]
    assert _codes(check(Facts(_target(parameters={"ImageId": "x"}), hooks=[HOOK], refreshes=[],
                              policy_body=GOOD_POLICY, now=NOW), opts)) == ["missing_parameter"]
    assert _codes(check(Facts(_target(), hooks=[HOOK], refreshes=[], policy_body=None, now=NOW), opts)) == [
        "stack_policy"]
    busy = [{"InstanceRefreshId": "r-1", "Status": "InProgress"}]
    assert _codes(check(Facts(_target(), hooks=[HOOK], refreshes=busy, policy_body=GOOD_POLICY, now=NOW),
                        opts)) == ["cycle_in_progress"]


def test_preflight_lock_blocks_while_its_update_runs_and_is_stale_after():
    value = lk.make_value("c1", NOW, "cloudformation", "2026-01-01T00:00:00Z/abc", owner="elsewhere:1")
    assert lk.parse(value).cycle_id == "c1" and lk.parse("garbage").garbled
    running = _target(stack_status="UPDATE_IN_PROGRESS",
                      parameters={"RebuildTimestamp": "2026-01-01T00:00:00Z/abc", "ImageId": "ami-1"})
    r = check(Facts(running, hooks=[HOOK], refreshes=[], policy_body=GOOD_POLICY, lock=value, now=NOW),
              RebuildOptions())
    assert "cycle_in_progress" in _codes(r)
    assert any("cycle c1" in p["message"] and p.get("lock_state") == "running" for p in r["problems"])
    # its update ended (rolled back: the stack's parameter is no longer the lock's) long ago: stale, a warning
    ended = _target(stack_status="UPDATE_ROLLBACK_COMPLETE")
    later = NOW + timedelta(minutes=10)
    r = check(Facts(ended, hooks=[HOOK], refreshes=[], policy_body=GOOD_POLICY, lock=value, now=later),
              RebuildOptions())
    assert r["ok"] and "interrupted" in r["stale_lock"] and r["lock"]["state"] == "stale"
    # ... moments ago: its owner is still releasing it
    r = check(Facts(ended, hooks=[HOOK], refreshes=[], policy_body=GOOD_POLICY, lock=value,
                    now=NOW + timedelta(seconds=30)), RebuildOptions())
    assert _codes(r) == ["cycle_in_progress"] and r["problems"][0]["lock_state"] == "releasing"


def test_lock_of_an_instance_refresh_follows_the_refresh_status():
    value = lk.make_value("c2", NOW, "instance_refresh", "r-1", owner="elsewhere:1")
    later = NOW + timedelta(hours=1)
    for status, state in (("InProgress", "running"), ("Baking", "running"), ("Successful", "stale"),
                          ("Cancelled", "stale")):
        a = lk.assess(lk.parse(value), later, "UPDATE_COMPLETE", {}, "RebuildTimestamp",
                      [{"InstanceRefreshId": "r-1", "Status": status}])
        assert a.state == state, status


def test_lock_owner_on_this_host_that_died_is_seen_dead():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    value = lk.make_value("c3", NOW, "cloudformation", "x", owner=f"{lk.owner_id().rsplit(':', 1)[0]}:{proc.pid}")
    assert lk.parse(value).owner_dead()
    assert not lk.parse(lk.make_value("c4", NOW, "cloudformation", "x")).owner_dead()  # this process
    assert not lk.parse(lk.make_value("c5", NOW, "cloudformation", "x", owner="other-host:1")).owner_dead()


def test_preflight_warns_about_protected_and_standby_instances_for_instance_refresh():
    instances = [{"InstanceId": "i-a", "LifecycleState": "InService", "ProtectedFromScaleIn": True},
                 {"InstanceId": "i-b", "LifecycleState": "Standby", "ProtectedFromScaleIn": False},
                 {"InstanceId": "i-c", "LifecycleState": "InService", "ProtectedFromScaleIn": False}]
    target = _target(stack=None, parameters={}, group_data={"Instances": instances})
    r = check(Facts(target, hooks=[HOOK], refreshes=[], now=NOW), RebuildOptions(strategy="instance_refresh"))
    assert r["ok"]
    [held] = [w for w in r["warnings"] if "will not be rebuilt" in w]
    assert "i-a protected from scale-in" in held and "i-b in Standby" in held and "i-c" not in held
    assert "ScaleInProtectedInstances=Refresh" in held and "StandbyInstances=Terminate" in held
    plain = _target(stack=None, parameters={}, group_data={"Instances": instances[2:]})
    r = check(Facts(plain, hooks=[HOOK], refreshes=[], now=NOW), RebuildOptions(strategy="instance_refresh"))
    assert not any("will not be rebuilt" in w for w in r["warnings"])


def test_preflight_instance_refresh_needs_no_stack_and_only_warns_on_policy():
    opts = RebuildOptions(strategy="instance_refresh")
    r = check(Facts(_target(stack=None, parameters={}), hooks=[HOOK], refreshes=[], now=NOW), opts)
    assert r["ok"]
    r = check(Facts(_target(), hooks=[HOOK], refreshes=[], policy_body=None, now=NOW), opts)
    assert r["ok"] and r["warnings"]
    r = check(Facts(_target(stack=None), hooks=[HOOK], refreshes=[], now=NOW), RebuildOptions())
    assert _codes(r) == ["no_stack"]


# -- plans -----------------------------------------------------------------------------------------
def test_cloudformation_plan_passes_every_parameter_explicitly():
    t = _target(parameters={"RebuildTimestamp": "old", "ImageId": "ami-1", "Secret": "****"},
                capabilities=["CAPABILITY_IAM"])
    plan = plan_cloudformation(t, RebuildOptions(), "new")
    assert plan == {"StackName": "web", "UsePreviousTemplate": True, "Capabilities": ["CAPABILITY_IAM"],
                    "Parameters": [{"ParameterKey": "RebuildTimestamp", "ParameterValue": "new"},
                                   {"ParameterKey": "ImageId", "ParameterValue": "ami-1"},
                                   {"ParameterKey": "Secret", "UsePreviousValue": True}]}
    with pytest.raises(BadRequest, match="no parameter RebuildTimestamp"):
        plan_cloudformation(_target(parameters={"ImageId": "x"}), RebuildOptions(), "new")


def test_instance_refresh_plan():
    default = plan_instance_refresh(_target(), RebuildOptions(strategy="instance_refresh"))
    assert default["Preferences"]["InstanceWarmup"] == 0
    plan = plan_instance_refresh(_target(), RebuildOptions(strategy="instance_refresh", min_healthy_percentage=75,
                                                           instance_warmup=30))
    assert plan == {"AutoScalingGroupName": "g", "Strategy": "Rolling",
                    "Preferences": {"MinHealthyPercentage": 75, "SkipMatching": False, "InstanceWarmup": 30}}
