"""The rebuild execution and state modules through Salt's loader (``salt-call --local``), against moto.

moto runs as a separate ``moto_server`` process on 127.0.0.1 (its state is process-wide, so it must
not share a process with localcloud). moto serves the plain API only: no rolling update, no lifecycle,
no instance refresh; the tests here cover what that allows (status, preflight, policy fix, dry runs,
the state's decisions, errors, and a cloudformation cycle that moto silently does not roll, which the
cycle must report as a failure).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devtools.saltcall import salt_call as devtools_salt_call

import boto3
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {"RebuildTimestamp": {"Type": "String"}, "ImageId": {"Type": "String"},
                   "Size": {"Type": "String"}},
    "Resources": {
        "WebLaunchTemplate": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": {"Ref": "ImageId"}, "InstanceType": "t3.micro",
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": "RebuildTimestamp", "Value": {"Ref": "RebuildTimestamp"}}]}]}}},
        "Queue": {"Type": "AWS::SQS::Queue"},
        "WebGroup": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                     "Properties": {"MinSize": {"Ref": "Size"}, "MaxSize": "8", "DesiredCapacity": {"Ref": "Size"},
                                    "AvailabilityZones": ["us-east-1a"],
                                    "LaunchTemplate": {"LaunchTemplateId": {"Ref": "WebLaunchTemplate"},
                                                       "Version": {"Fn::GetAtt": ["WebLaunchTemplate",
                                                                                  "LatestVersionNumber"]}}},
                     "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": 1,
                                                                   "MinInstancesInService": 3}}},
    },
}
ALLOW_ALL = {"Statement": [{"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    port = _free_port()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def clients(moto_endpoint):
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    return {s: session.client(s, endpoint_url=moto_endpoint) for s in ("cloudformation", "autoscaling", "ec2")}


_counter = iter(range(10**6))


@pytest.fixture
def fleet(clients):
    """A stack with a group of 4, a LAUNCHING hook (DefaultResult ABANDON) and an allow-all stack policy."""
    name = f"web{next(_counter)}"
    ami = clients["ec2"].describe_images()["Images"][0]["ImageId"]
    clients["cloudformation"].create_stack(
        StackName=name, TemplateBody=json.dumps(TEMPLATE), StackPolicyBody=json.dumps(ALLOW_ALL),
        Parameters=[{"ParameterKey": "RebuildTimestamp", "ParameterValue": "initial"},
                    {"ParameterKey": "ImageId", "ParameterValue": ami},
                    {"ParameterKey": "Size", "ParameterValue": "4"}])
    res = clients["cloudformation"].describe_stack_resources(StackName=name)["StackResources"]
    group = next(r["PhysicalResourceId"] for r in res if r["LogicalResourceId"] == "WebGroup")
    clients["autoscaling"].put_lifecycle_hook(
        AutoScalingGroupName=group, LifecycleHookName="provision",
        LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING", DefaultResult="ABANDON", HeartbeatTimeout=600)
    return {"stack": name, "group": group}


@pytest.fixture(scope="module")
def salt_call(tmp_path_factory, moto_endpoint):
    """Run ``salt-call --local`` with a minion config whose loader dirs are the repo's."""
    root = tmp_path_factory.mktemp("salt-local")
    conf = root / "conf"
    conf.mkdir()
    (conf / "minion").write_text(yaml.safe_dump({
        "id": "rebuild-test",
        "file_client": "local",
        "root_dir": str(root),
        "file_roots": {"base": [str(REPO / "salt")]},
        "module_dirs": [str(REPO / "_modules")],
        "states_dirs": [str(REPO / "_states")],
        "utils_dirs": [str(REPO / "_utils")],
        "log_level_logfile": "debug",
        "phoenix": {"aws": {"endpoint_url": moto_endpoint, "region": "us-east-1", "max_attempts": 2}},
    }))
    env = {**os.environ, **CREDS}

    def run(*args: str, check: bool = True) -> tuple[int, object, str]:
        return devtools_salt_call(conf, *args, env=env, timeout=300, check=check)

    run.conf = conf
    run.env = env
    return run


def _params(clients, stack):
    s = clients["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in s["Parameters"]}


def _policy(clients, stack):
    return json.loads(clients["cloudformation"].get_stack_policy(StackName=stack)["StackPolicyBody"])


def _tags(clients, group):
    g = clients["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    return {t["Key"]: t["Value"] for t in g.get("Tags", [])}


def test_status_lists_every_instance_with_age_and_version(salt_call, fleet):
    _, out, _ = salt_call("rebuild.status", f"stack={fleet['stack']}", "max_age=24h")
    assert out["group"] == fleet["group"] and out["stack"] == fleet["stack"]
    assert out["count"] == 4 and out["in_service"] == 4 and out["past_max_age"] == 0
    for row in out["instances"]:
        assert row["lifecycle_state"] == "InService"
        assert row["launch_version"].endswith(":1")
        assert 0 <= row["age_seconds"] < 3600 and row["past_max_age"] is False
    _, out0, _ = salt_call("rebuild.status", f"group={fleet['group']}", "max_age=0")
    assert out0["past_max_age"] == 4 and out0["stack"] == fleet["stack"]


def test_preflight_reports_permissive_policy_then_fixes_it(salt_call, fleet, clients):
    _, out, _ = salt_call("rebuild.preflight", f"stack={fleet['stack']}")
    assert out["ok"] is False
    (problem,) = out["problems"]
    assert problem["code"] == "stack_policy" and "Queue" in problem["message"]
    assert problem["offending_statements"] == ALLOW_ALL["Statement"]
    assert _policy(clients, fleet["stack"]) == ALLOW_ALL  # reporting changes nothing

    _, dry, _ = salt_call("rebuild.preflight", f"stack={fleet['stack']}", "fix_policy=True", "test=True")
    assert dry["would_fix_policy"]["Statement"][0]["Resource"] == ["LogicalResourceId/WebGroup",
                                                                   "LogicalResourceId/WebLaunchTemplate"]
    assert _policy(clients, fleet["stack"]) == ALLOW_ALL

    _, fixed, _ = salt_call("rebuild.preflight", f"stack={fleet['stack']}", "fix_policy=True")
    assert fixed["ok"] is True, fixed["problems"]
    assert _policy(clients, fleet["stack"]) == fixed["policy_fixed"] == dry["would_fix_policy"]
    _, again, _ = salt_call("rebuild.recommended_policy", f"stack={fleet['stack']}")
    assert again == fixed["policy_fixed"]


def test_preflight_requires_a_launch_hook_with_default_abandon(salt_call, fleet, clients):
    clients["autoscaling"].delete_lifecycle_hook(AutoScalingGroupName=fleet["group"], LifecycleHookName="provision")
    clients["autoscaling"].put_lifecycle_hook(
        AutoScalingGroupName=fleet["group"], LifecycleHookName="provision",
        LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING", DefaultResult="CONTINUE", HeartbeatTimeout=600)
    _, out, _ = salt_call("rebuild.preflight", f"stack={fleet['stack']}", "fix_policy=True")
    assert [p["code"] for p in out["problems"]] == ["no_launch_hook"]
    assert "provision=CONTINUE" in out["problems"][0]["message"]


def test_dry_run_cycle_says_what_it_would_do_and_changes_nothing(salt_call, fleet, clients):
    before = _params(clients, fleet["stack"])
    rc, out, _ = salt_call("rebuild.cycle", f"stack={fleet['stack']}", "test=True", "fix_policy=True")
    assert rc == 0 and out["dry_run"] is True and "result" not in out  # salt-call: a falsy result means failure
    assert len(out["would_replace"]) == 4
    assert "UpdateStack" in out["comment"] and "Would first set the recommended stack policy" in out["comment"]
    sent = {p["ParameterKey"]: p.get("ParameterValue") for p in out["call"]["Parameters"]}
    assert sent["ImageId"] == before["ImageId"] and sent["Size"] == "4"
    assert sent["RebuildTimestamp"] != before["RebuildTimestamp"]
    assert not any("UsePreviousValue" in p for p in out["call"]["Parameters"])
    # the plan: 4 instances, MaxBatchSize 1, the hook's 600 s timeout + launch, and the derived deadline
    assert out["plan"]["batches"] == 4 and out["plan"]["per_batch_seconds"] == 720
    assert out["plan"]["deadline_seconds"] == 4 * 720 + 600 and "deadline 58m" in out["comment"]
    assert _params(clients, fleet["stack"]) == before
    assert _policy(clients, fleet["stack"]) == ALLOW_ALL
    assert "phoenix:rebuild:cycle" not in _tags(clients, fleet["group"])


def test_refused_cycle_names_the_problem_and_changes_nothing(salt_call, fleet, clients):
    before = _params(clients, fleet["stack"])
    rc, out, err = salt_call("rebuild.cycle", f"stack={fleet['stack']}", check=False)
    assert rc != 0
    assert "refused, nothing was changed" in err and "stack policy" in err and "fix_policy=True" not in str(out)
    assert _params(clients, fleet["stack"]) == before


def test_cycle_that_replaces_nothing_is_reported_as_failure(salt_call, fleet, clients):
    """moto accepts UpdateStack but ignores AutoScalingRollingUpdate: the cycle must notice and fail."""
    rc, out, _ = salt_call("rebuild.cycle", f"stack={fleet['stack']}", "fix_policy=True", "poll_initial=0.2",
                           check=False)
    assert rc == 1, out
    assert out["result"] is False and out["status"] == "UPDATE_COMPLETE"
    assert "older than the cycle's start remain" in out["reason"]
    assert len(out["old_instances_left"]) == 4 and out["in_service_after"] == 4
    assert out["replaced"] == 0 and out["abandoned"] == 0
    assert _params(clients, fleet["stack"])["RebuildTimestamp"] != "initial"
    assert "phoenix:rebuild:cycle" not in _tags(clients, fleet["group"])  # lock released


def test_lock_tag_of_a_running_cycle_refuses_a_second_one(salt_call, fleet, clients):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    # a cycle on another host whose update ended seconds ago: it is still releasing its lock
    clients["autoscaling"].create_or_update_tags(Tags=[{
        "ResourceId": fleet["group"], "ResourceType": "auto-scaling-group", "Key": "phoenix:rebuild:cycle",
        "Value": f"v2|other-cycle|other-host:1|{(now - timedelta(seconds=5)).isoformat(timespec='seconds')}|"
                 "cloudformation|2026-01-01T00:00:00Z/abcdef", "PropagateAtLaunch": False}])
    rc, _, err = salt_call("rebuild.cycle", f"stack={fleet['stack']}", "fix_policy=True", check=False)
    assert rc != 0 and "already running" in err and "other-cycle" in err and "releasing its lock" in err
    assert "only the stack policy was changed" in err  # fix_policy set it before the refusal: said so
    _, status, _ = salt_call("rebuild.status", f"stack={fleet['stack']}")
    assert status["lock"]["cycle_id"] == "other-cycle" and status["lock"]["state"] == "releasing"


@pytest.mark.parametrize("args,expected", [
    (("stack=no-such-stack",), "CloudFormation stack 'no-such-stack' does not exist"),
    (("group=no-such-group",), "Auto Scaling group 'no-such-group' does not exist"),
    (("stack=x", "strategy=blue_green"), "unknown strategy 'blue_green'"),
    (("stack=x", "max_age=soon"), "max_age: expected a duration"),
    ((), "name a stack (stack=...) or an Auto Scaling group (group=...)"),
])
def test_bad_input_gives_clear_errors(salt_call, args, expected):
    rc, _, err = salt_call("rebuild.cycle", *args, check=False)
    assert rc != 0 and expected in err


def test_missing_rebuild_timestamp_parameter_is_refused(salt_call, clients):
    template = json.loads(json.dumps(TEMPLATE))
    del template["Parameters"]["RebuildTimestamp"]
    template["Resources"]["WebLaunchTemplate"]["Properties"]["LaunchTemplateData"].pop("TagSpecifications")
    ami = clients["ec2"].describe_images()["Images"][0]["ImageId"]
    clients["cloudformation"].create_stack(StackName="no-ts", TemplateBody=json.dumps(template),
                                           Parameters=[{"ParameterKey": "ImageId", "ParameterValue": ami},
                                                       {"ParameterKey": "Size", "ParameterValue": "2"}])
    rc, _, err = salt_call("rebuild.cycle", "stack=no-ts", "fix_policy=True", "require_launch_hook=False",
                           check=False)
    assert rc != 0 and "stack no-ts has no parameter RebuildTimestamp" in err


def test_unreachable_endpoint_is_a_clear_error(salt_call):
    port = _free_port()
    rc, _, err = salt_call("rebuild.status", "stack=web", f"endpoint_url=http://127.0.0.1:{port}",
                           "max_attempts=1", "connect_timeout=1", check=False)
    assert rc != 0
    assert f"cannot reach http://127.0.0.1:{port}" in err and "DescribeStacks on stack web" in err


def test_aws_error_names_action_and_resource(salt_call, fleet):
    """moto does not implement StartInstanceRefresh: the error names the action, the group and the answer."""
    rc, _, err = salt_call("rebuild.cycle", f"group={fleet['group']}", "strategy=instance_refresh", check=False)
    assert rc != 0
    assert f"StartInstanceRefresh on group {fleet['group']} failed" in err


def test_fresh_state_is_a_noop_while_young_and_predicts_in_test_mode(salt_call, fleet, clients):
    before = _params(clients, fleet["stack"])
    _, out, _ = salt_call("state.single", "rebuild.fresh", f"name={fleet['stack']}", "max_age=24h")
    (ret,) = out.values()
    assert ret["result"] is True and ret["changes"] == {} and "younger than 24h" in ret["comment"]

    _, out, _ = salt_call("state.single", "rebuild.fresh", f"name={fleet['stack']}", "max_age=0", "fix_policy=True",
                          "test=True")
    (ret,) = out.values()
    assert ret["result"] is None
    assert len(ret["changes"]["would_replace"]) == 4 and ret["changes"]["strategy"] == "cloudformation"
    assert "4 of 4 instance(s)" in ret["comment"] and "Would run UpdateStack" in ret["comment"]
    assert _params(clients, fleet["stack"]) == before


def test_fresh_state_fails_cleanly_when_refused(salt_call, fleet):
    rc, out, _ = salt_call("state.single", "rebuild.fresh", f"name={fleet['stack']}", "max_age=0", check=False)
    (ret,) = out.values()
    assert ret["result"] is False and "refused" in ret["comment"] and "stack policy" in ret["comment"]


def test_orchestration_sls_renders_one_fresh_state_per_target_in_order(salt_call):
    _, out, _ = salt_call("state.show_sls", "orch.rebuild",
                          'pillar={"stacks": ["web", "api"], "force": true, "max_age": 0, "strategy": "instance_refresh"}')
    assert set(out) == {"phoenix-rebuild-web", "phoenix-rebuild-api"}
    api = out["phoenix-rebuild-api"]["rebuild"]
    args = {k: v for item in api if isinstance(item, dict) for k, v in item.items()}
    assert args["stack"] == "api" and args["force"] is True and args["max_age"] == "0"
    assert args["strategy"] == "instance_refresh"
    assert args["require"] == [{"rebuild": "phoenix-rebuild-web"}]
    _, empty, _ = salt_call("state.show_sls", "orch.rebuild")
    assert list(empty) == ["phoenix-rebuild-no-target"]


def test_schedule_sls_schedules_the_hourly_check(salt_call):
    pillar = ('pillar={"phoenix": {"rebuild": {"check_interval": "30m", "check_splay": "2m", '
              '"schedule": {"offline": true}}}}')
    _, out, _ = salt_call("state.apply", "rebuild.schedule", pillar)
    (ret,) = out.values()
    assert ret["result"] is True, ret
    _, jobs, _ = salt_call("schedule.list", "offline=True", "return_yaml=False")
    job = jobs["phoenix-rebuild-daily"]
    assert job["function"] == "state.sls" and job["args"] == ["rebuild.daily"]
    assert job["seconds"] == 1800 and job["splay"] == 120 and job["maxrunning"] == 1
    _, again, _ = salt_call("state.apply", "rebuild.schedule", pillar)
    assert list(again.values())[0]["changes"] == {}  # idempotent


def test_schedule_sls_refuses_the_old_daily_keys(salt_call):
    pillar = 'pillar={"phoenix": {"rebuild": {"schedule": {"hours": 24, "offline": true}}}}'
    rc, out, _ = salt_call("state.apply", "rebuild.schedule", pillar, check=False)
    (ret,) = out.values()
    assert ret["result"] is False and "phoenix:rebuild:schedule:hours is no longer used" in ret["comment"]


def test_daily_sls_uses_the_fresh_state_for_each_stack(salt_call):
    _, out, _ = salt_call("state.show_sls", "rebuild.daily", 'pillar={"phoenix": {"rebuild": {"stacks": ["web"]}}}')
    assert list(out) == ["phoenix-rebuild-daily-web"]
    assert "fresh" in out["phoenix-rebuild-daily-web"]["rebuild"]
