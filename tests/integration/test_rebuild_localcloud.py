"""rebuild.cycle against localcloud: real rolling updates, instance refresh, lifecycle hooks, rollbacks.

The test plays the provisioner (a later issue does it with Salt): a localcloud instance agent that,
for every launched instance, completes its LAUNCHING lifecycle action with CONTINUE, ABANDON, or not
at all, as each test chooses. Cycles run through the Python API (``run_cycle``, for control over
concurrency) and through ``salt-call --local`` (the Salt loader path) against the same endpoint.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from devtools.saltcall import salt_call as devtools_salt_call
from typing import Any

import boto3
import pytest
import yaml

from localcloud import LocalCloud
from phoenix.aws import AWS, settings_from
from phoenix.rebuild.cycle import run_cycle
from phoenix.rebuild.errors import CycleInProgress, PreflightFailed
from phoenix.rebuild.options import options_from

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TEMPLATE = (REPO / "localcloud" / "templates" / "web-fleet.yaml").read_text()
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
HOOK = "provision"
FAST = {"poll_initial": 0.1, "poll_max": 0.5, "deadline": 300}


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Provisioner:
    """Instance agent standing in for provisioning: answers each LAUNCHING hook as ``mode`` says.

    mode: "continue" | "abandon" | "ignore" (nobody answers). ``plan`` (a list) overrides ``mode`` for the
    next launches, one entry each, in launch order. ``gate`` (an Event) holds answers back.
    """

    def __init__(self) -> None:
        self.endpoint: str | None = None
        self.group: str | None = None
        self.mode = "continue"
        self.plan: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.answered: dict[str, str] = {}
        self.started: list[str] = []
        self._stop = threading.Event()

    def start(self, instance_id: str) -> None:
        self.started.append(instance_id)
        threading.Thread(target=self._answer, args=(instance_id,), daemon=True).start()

    def stop(self, instance_id: str) -> None:
        pass

    def shutdown(self) -> None:
        self._stop.set()
        self.gate.set()

    def _answer(self, instance_id: str) -> None:
        mode = self.plan.pop(0) if self.plan else self.mode
        if mode == "ignore" or self.endpoint is None:
            return
        client = boto3.client("autoscaling", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        self.gate.wait()
        result = "CONTINUE" if mode == "continue" else "ABANDON"
        for _ in range(600):
            if self._stop.is_set():
                return
            try:
                client.complete_lifecycle_action(AutoScalingGroupName=self.group, LifecycleHookName=HOOK,
                                                 InstanceId=instance_id, LifecycleActionResult=result)
                self.answered[instance_id] = result
                return
            except Exception:  # not in Pending:Wait yet
                time.sleep(0.05)


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    """Dummy credentials for the in-process adapter (localcloud accepts any), restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDS.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def provisioner():
    p = Provisioner()
    yield p
    p.shutdown()




@pytest.fixture(scope="module")
def cloud(provisioner):
    with LocalCloud(boot_seconds=0.3, agent=provisioner) as c:
        provisioner.endpoint = c.endpoint
        yield c


@pytest.fixture(scope="module")
def aws_clients(cloud):
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    return {s: session.client(s, endpoint_url=cloud.endpoint) for s in ("cloudformation", "autoscaling", "ec2")}


def in_service(aws_clients, group: str) -> list[dict[str, Any]]:
    g = aws_clients["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    return [i for i in g["Instances"] if i["LifecycleState"] == "InService"]


def make_fleet(cloud, provisioner, aws_clients, size: int = 4, min_in_service: int = 3, heartbeat: int = 900,
               name: str = "web") -> dict[str, Any]:
    cloud.reset()
    provisioner.mode = "continue"
    provisioner.plan = []
    provisioner.gate.set()
    params = {"RebuildTimestamp": "initial", "ImageId": "ami-12c6146b", "InstanceType": "t3.micro",
              "MinSize": "1", "MaxSize": str(size * 2), "DesiredCapacity": str(size), "RollingMaxBatchSize": "1",
              "RollingMinInstancesInService": str(min_in_service), "HookHeartbeatTimeout": str(heartbeat)}
    cfn = aws_clients["cloudformation"]
    cfn.create_stack(StackName=name, TemplateBody=TEMPLATE, Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])}
    group = outputs["GroupName"]
    provisioner.group = group
    wait_until(lambda: len(in_service(aws_clients, group)) == size, what=f"{size} instances InService")
    return {"stack": name, "group": group, "size": size, "min_in_service": min_in_service,
            "original": {i["InstanceId"] for i in in_service(aws_clients, group)}}


def adapter(cloud, **extra) -> AWS:
    return AWS(settings_from({"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2}, extra))


class Events(list):
    def __call__(self, tag: str, data: dict[str, Any]) -> None:
        self.append((tag, data))

    def stages(self) -> list[str]:
        return [t.split("/", 3)[3] for t, _ in self]


def min_capacity_since(cloud, group: str, since: float) -> int:
    """Lowest InService count from the last timeline entry before ``since`` to the end."""
    timeline = cloud.timeline(group)
    before = [e for e in timeline if e["time"] <= since]
    during = ([before[-1]] if before else []) + [e for e in timeline if e["time"] > since]
    assert during, "the timeline recorded nothing"
    return min(e["in_service"] for e in during)


def launch_times(aws_clients, ids) -> dict[str, Any]:
    res = aws_clients["ec2"].describe_instances(InstanceIds=list(ids))["Reservations"]
    return {i["InstanceId"]: i["LaunchTime"] for r in res for i in r["Instances"]}


# -- full cycles -----------------------------------------------------------------------------------
def test_cloudformation_cycle_replaces_every_instance_keeping_capacity(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    events = Events()
    start = cloud.clock.now()
    summary = run_cycle(adapter(cloud), options_from(FAST), stack=fleet["stack"], fix_policy=True, emit=events)
    assert summary["result"] is True, summary
    assert summary["replaced"] == 4 and summary["abandoned"] == 0 and summary["status"] == "UPDATE_COMPLETE"
    now_ids = {i["InstanceId"] for i in in_service(aws_clients, fleet["group"])}
    assert len(now_ids) == 4 and not now_ids & fleet["original"]
    assert set(summary["replaced_instances"]) == fleet["original"]
    # no instance older than the cycle's start remains
    assert all(t.timestamp() >= start - 1 for t in launch_times(aws_clients, now_ids).values())
    assert min_capacity_since(cloud, fleet["group"], start) >= fleet["min_in_service"]
    stages = events.stages()
    assert stages[:3] == ["started", "policy/fixed", "preflight"] and stages[-1] == "finished"
    assert stages.count("instance/replaced") == 4 and stages.count("instance/in_service") == 4
    assert "triggered" in stages and "stack_event" in stages and stages.count("batch") == 4
    assert all(t.startswith(f"phoenix/rebuild/{fleet['group']}/") for t, _ in events)
    # the stack's other parameters are unchanged, RebuildTimestamp is new
    params = {p["ParameterKey"]: p["ParameterValue"] for p in
              aws_clients["cloudformation"].describe_stacks(StackName="web")["Stacks"][0]["Parameters"]}
    assert params["DesiredCapacity"] == "4" and params["RollingMinInstancesInService"] == "3"
    assert params["RebuildTimestamp"] != "initial"


def test_instance_refresh_cycle_replaces_every_instance_keeping_capacity(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    events = Events()
    start = cloud.clock.now()
    opts = options_from(FAST, {"strategy": "instance_refresh", "min_healthy_percentage": 75})
    summary = run_cycle(adapter(cloud), opts, group=fleet["group"], emit=events)
    assert summary["result"] is True, summary
    assert summary["replaced"] == 4 and summary["status"] == "Successful"
    now_ids = {i["InstanceId"] for i in in_service(aws_clients, fleet["group"])}
    assert len(now_ids) == 4 and not now_ids & fleet["original"]
    assert min_capacity_since(cloud, fleet["group"], start) >= 3  # 75% of 4
    assert "progress" in events.stages() and events.stages()[-1] == "finished"


def test_instance_refresh_cycle_reports_a_protected_instance_it_left_old(cloud, provisioner, aws_clients):
    """AWS's default ScaleInProtectedInstances=Wait: the refresh waits (then fails) and the protected
    instance stays old; preflight warns naming it and the summary fails listing it, never "done"."""
    fleet = make_fleet(cloud, provisioner, aws_clients)
    protected = sorted(fleet["original"])[0]
    aws_clients["autoscaling"].set_instance_protection(AutoScalingGroupName=fleet["group"],
                                                       InstanceIds=[protected], ProtectedFromScaleIn=True)
    opts = options_from(FAST, {"strategy": "instance_refresh", "min_healthy_percentage": 75})
    done: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: done.update(run_cycle(adapter(cloud), opts, group=fleet["group"],
                                                                   emit=Events())))
    runner.start()

    def waiting() -> bool:
        refreshes = aws_clients["autoscaling"].describe_instance_refreshes(
            AutoScalingGroupName=fleet["group"])["InstanceRefreshes"]
        return bool(refreshes) and "Waiting" in (refreshes[0].get("StatusReason") or "")

    wait_until(waiting, timeout=120, what="the refresh to wait for the protected instance")
    cloud.advance(3601)  # AWS: "waits one hour for you to remove scale-in protection"
    runner.join(120)
    assert not runner.is_alive()
    summary = done
    [warning] = [w for w in summary["preflight"]["warnings"] if "will not be rebuilt" in w]
    assert protected in warning and "ScaleInProtectedInstances=Refresh" in warning
    assert summary["result"] is False, summary
    assert summary["old_instances_left"] == [protected]
    assert summary["outcome"] == "failed" and summary["status"] == "Failed", summary
    assert protected in summary["reason"], summary
    alive = {i["InstanceId"] for i in aws_clients["autoscaling"].describe_auto_scaling_groups(
        AutoScalingGroupNames=[fleet["group"]])["AutoScalingGroups"][0]["Instances"]}
    assert protected in alive and len(alive & fleet["original"]) == 1  # the other three were rebuilt


@pytest.mark.parametrize("strategy", ["cloudformation", "instance_refresh"])
def test_dry_run_makes_only_read_calls(cloud, provisioner, aws_clients, strategy):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    cloud.api_calls(reset=True)
    out = run_cycle(adapter(cloud), options_from(FAST, {"strategy": strategy}), stack="web", fix_policy=True,
                    dry_run=True)
    calls = cloud.api_calls()
    assert calls and all(k.split(":")[1].startswith(("Describe", "Get", "List")) for k in calls), calls
    assert out["dry_run"] is True and sorted(out["would_replace"]) == sorted(fleet["original"])
    assert out["would_fix_policy"] is not None  # the template's stack has no policy yet
    assert {i["InstanceId"] for i in in_service(aws_clients, fleet["group"])} == fleet["original"]


def test_salt_call_cycle_against_localcloud(cloud, provisioner, aws_clients, salt_local):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    rc, out, err = salt_local(cloud, "rebuild.cycle", f"stack={fleet['stack']}", "fix_policy=True",
                              "poll_initial=0.1", "poll_max=0.5")
    assert rc == 0, err
    assert out["result"] is True and out["replaced"] == 4 and out["oldest_age_after"] is not None
    assert "Rebuilt" in out["comment"]
    # progress is logged with counts and elapsed time when there is no event bus (--local)
    assert "[instance/replaced]" in err and "replaced=4" in err


# -- refusals --------------------------------------------------------------------------------------
def test_second_cycle_while_one_runs_is_refused(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.gate.clear()  # hold provisioning: the first cycle stays in UPDATE_IN_PROGRESS
    events = Events()
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.update(run_cycle(
        adapter(cloud), options_from(FAST), stack=fleet["stack"], fix_policy=True, emit=events)))
    first.start()
    try:
        wait_until(lambda: "triggered" in events.stages(), what="the first cycle to trigger")
        second = Events()
        with pytest.raises(CycleInProgress) as info:
            run_cycle(adapter(cloud), options_from(FAST), stack=fleet["stack"], fix_policy=True, emit=second)
        assert "already running" in str(info.value) and "nothing was changed" in str(info.value)
        assert second.stages()[-1] == "failed"
        # also with the other strategy
        with pytest.raises(CycleInProgress, match="already running"):
            run_cycle(adapter(cloud), options_from(FAST, {"strategy": "instance_refresh"}), group=fleet["group"])
    finally:
        provisioner.gate.set()
        first.join(timeout=120)
    assert results["result"] is True and results["replaced"] == 4


def test_stack_not_stable_is_refused(cloud, provisioner, aws_clients):
    """Someone else's update is running (UPDATE_IN_PROGRESS): the cycle refuses and changes nothing."""
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.gate.clear()
    cfn = aws_clients["cloudformation"]
    stack = cfn.describe_stacks(StackName="web")["Stacks"][0]
    params = [{"ParameterKey": p["ParameterKey"],
               "ParameterValue": "manual" if p["ParameterKey"] == "RebuildTimestamp" else p["ParameterValue"]}
              for p in stack["Parameters"]]
    try:
        cfn.update_stack(StackName="web", UsePreviousTemplate=True, Parameters=params, Capabilities=["CAPABILITY_IAM"])
        wait_until(lambda: cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"] == "UPDATE_IN_PROGRESS",
                   what="UPDATE_IN_PROGRESS")
        with pytest.raises(PreflightFailed, match="stack web is UPDATE_IN_PROGRESS"):
            run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True)
        assert cfn.describe_stacks(StackName="web")["Stacks"][0]["Parameters"] == [
            {"ParameterKey": p["ParameterKey"], "ParameterValue": p["ParameterValue"]} for p in params]
    finally:
        provisioner.gate.set()
    wait_until(lambda: cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE",
               what="the manual update to finish")


def test_stack_left_in_update_rollback_failed_is_refused(cloud, provisioner, aws_clients):
    """Every launch is abandoned, the rollback's too: the stack ends UPDATE_ROLLBACK_FAILED; the next cycle
    is refused until someone repairs the stack."""
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.mode = "abandon"
    try:
        summary = run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True)
    finally:
        provisioner.mode = "continue"
    assert summary["result"] is False and summary["status"] == "UPDATE_ROLLBACK_FAILED"
    assert len(in_service(aws_clients, fleet["group"])) >= fleet["min_in_service"]
    with pytest.raises(PreflightFailed, match="stack web is UPDATE_ROLLBACK_FAILED, not stable") as info:
        run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True)
    assert [p["code"] for p in info.value.problems] == ["stack_not_stable"]
    assert "ContinueUpdateRollback" in info.value.problems[0]["fix"]


def test_permissive_stack_policy_is_reported_and_fixed(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    cfn = aws_clients["cloudformation"]
    cfn.set_stack_policy(StackName="web", StackPolicyBody=json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"}]}))
    with pytest.raises(PreflightFailed) as info:
        run_cycle(adapter(cloud), options_from(FAST), stack="web")
    (problem,) = info.value.problems
    assert problem["code"] == "stack_policy"
    assert "HookQueue" in problem["message"] and "LaunchRole" in problem["message"]
    assert problem["offending_statements"][0]["Resource"] == "*"
    summary = run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True)
    assert summary["result"] is True and summary["preflight"]["policy_fixed"] is True
    policy = json.loads(cfn.get_stack_policy(StackName="web")["StackPolicyBody"])
    assert policy["Statement"][0]["Resource"] == ["LogicalResourceId/LaunchTemplate", "LogicalResourceId/WebGroup"]


# -- failures leave the old fleet serving ----------------------------------------------------------
@pytest.mark.parametrize("rolling_abandon", ["replace", "fail"])
def test_abandoned_replacements_fail_the_cycle_and_roll_back(cloud, provisioner, aws_clients, rolling_abandon):
    """Whether CloudFormation itself fails the update on an abandoned launch (it does not without
    WaitOnResourceSignals: localcloud's default "replace") or not, the abandon budget (default: none in the
    first batch) ends the cycle, the update rolls back, and the summary says which originals were terminated."""
    fleet = make_fleet(cloud, provisioner, aws_clients)
    cloud.rolling_abandon = rolling_abandon
    provisioner.plan = ["abandon"]  # the first replacement is abandoned; the rollback's launches succeed
    events = Events()
    start = cloud.clock.now()
    try:
        summary = run_cycle(adapter(cloud), options_from(FAST), stack="web", fix_policy=True, emit=events)
    finally:
        cloud.rolling_abandon = "replace"
    assert summary["result"] is False
    assert summary["abandoned"] >= 1 and summary["status"] == "UPDATE_ROLLBACK_COMPLETE"
    # "fail": CloudFormation fails the update itself, but the budget may see the abandon first
    assert summary["outcome"] in (("abandon_budget",) if rolling_abandon == "replace" else ("abandon_budget", "failed"))
    if rolling_abandon == "replace":
        assert "cancelled" in events.stages() and "abandoned in the first batch" in summary["reason"]
    assert summary["settled"] is True
    # the comment says exactly what happened to the original instances
    n = summary["original_terminated"]
    assert n == len(set(summary["replaced_instances"]) & fleet["original"])
    if n:
        assert f"{n} of the 4 original instance(s) had been terminated" in summary["comment"]
    else:
        assert "the instances in service were left serving" in summary["comment"]
    assert events.stages()[-1] == "failed" and "instance/abandoned" in events.stages()
    # the old fleet keeps serving: capacity never under MinInstancesInService, all on the old version
    assert min_capacity_since(cloud, fleet["group"], start) >= fleet["min_in_service"]
    serving = in_service(aws_clients, fleet["group"])
    assert len(serving) == 4 and summary["in_service_after"] == 4
    assert len({i["LaunchTemplate"]["Version"] for i in serving}) == 1
    params = {p["ParameterKey"]: p["ParameterValue"] for p in
              aws_clients["cloudformation"].describe_stacks(StackName="web")["Stacks"][0]["Parameters"]}
    assert params["RebuildTimestamp"] == "initial"  # rolled back
    assert set(summary["old_instances_left"]) <= fleet["original"]


def test_unanswered_hook_hits_heartbeat_timeout_and_default_abandon(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients, heartbeat=120)
    provisioner.plan = ["ignore"]  # nobody answers the first replacement's hook
    events = Events()
    results: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: results.update(run_cycle(
        adapter(cloud), options_from(FAST), stack="web", fix_policy=True, emit=events)))
    runner.start()
    try:
        wait_until(lambda: any(i["LifecycleState"] == "Pending:Wait" for i in aws_clients["autoscaling"]
                               .describe_auto_scaling_groups(AutoScalingGroupNames=[fleet["group"]])
                               ["AutoScalingGroups"][0]["Instances"]), what="a new instance in Pending:Wait")
        cloud.advance(121)  # nobody answered within HeartbeatTimeout: DefaultResult ABANDON applies
    finally:
        runner.join(timeout=120)
    assert not runner.is_alive()
    assert results["result"] is False and results["abandoned"] >= 1
    assert results["status"] == "UPDATE_ROLLBACK_COMPLETE"
    assert len(in_service(aws_clients, fleet["group"])) == 4


def test_deadline_cancels_the_update_and_the_stack_rolls_back(cloud, provisioner, aws_clients):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    provisioner.gate.clear()
    try:
        summary = run_cycle(adapter(cloud), options_from(FAST, {"deadline": 2}), stack="web", fix_policy=True)
    finally:
        provisioner.gate.set()
    assert summary["result"] is False and "deadline of 2s exceeded" in summary["reason"]
    assert "update cancelled" in summary["reason"]
    cfn = aws_clients["cloudformation"]
    wait_until(lambda: cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"].endswith("COMPLETE"),
               what="the cancelled update to settle")
    assert cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    wait_until(lambda: len(in_service(aws_clients, fleet["group"])) == 4, what="4 instances in service")


# -- status / fresh over a simulated day ------------------------------------------------------------
def test_fresh_state_noop_while_young_and_forced_run(cloud, provisioner, aws_clients, salt_local):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    _, young, _ = salt_local(cloud, "rebuild.status", "stack=web", "max_age=24h")
    assert young["past_max_age"] == 0 and young["count"] == 4 and young["in_service"] == 4
    _, noop, _ = salt_local(cloud, "state.single", "rebuild.fresh", "name=web", "max_age=24h")
    (ret,) = noop.values()
    assert ret["result"] is True and ret["changes"] == {} and "nothing to do" in ret["comment"]
    rc, out, _ = salt_local(cloud, "state.single", "rebuild.fresh", "name=web", "force=True", "fix_policy=True",
                            "poll_initial=0.1", "poll_max=0.5")
    (ret,) = out.values()
    assert rc == 0 and ret["result"] is True, ret
    assert sorted(ret["changes"]["replaced_instances"]) == sorted(fleet["original"])
    assert len(ret["changes"]["new_instances"]) == 4


def test_status_and_fresh_follow_the_simulated_clock(cloud, provisioner, aws_clients, salt_local):
    """A simulated day passes (localcloud's clock): every instance is past max_age and fresh rebuilds them.

    Instance ages are measured against AWS's clock (the HTTP Date header), so this needs localcloud to
    send its virtual time in the Date header.
    """
    fleet = make_fleet(cloud, provisioner, aws_clients)
    cloud.advance(25 * 3600)
    _, old, _ = salt_local(cloud, "rebuild.status", "stack=web", "max_age=24h")
    assert old["past_max_age"] == 4 and old["oldest_age_seconds"] >= 25 * 3600
    rc, out, _ = salt_local(cloud, "state.single", "rebuild.fresh", "name=web", "max_age=24h", "fix_policy=True",
                            "poll_initial=0.1", "poll_max=0.5")
    (ret,) = out.values()
    assert rc == 0 and ret["result"] is True, ret
    assert "4 of 4 instance(s)" in ret["comment"]
    assert sorted(ret["changes"]["replaced_instances"]) == sorted(fleet["original"])
    _, fresh, _ = salt_local(cloud, "rebuild.status", "stack=web", "max_age=24h")
    assert fresh["past_max_age"] == 0 and fresh["oldest_age_seconds"] < 3600


# -- bad input ---------------------------------------------------------------------------------------
def test_unknown_names_against_localcloud(cloud, provisioner, aws_clients, salt_local):
    make_fleet(cloud, provisioner, aws_clients)
    rc, _, err = salt_local(cloud, "rebuild.cycle", "stack=nope", check=False)
    assert rc != 0 and "CloudFormation stack 'nope' does not exist" in err
    rc, _, err = salt_local(cloud, "rebuild.cycle", "stack=web", "group=other-group", check=False)
    assert rc != 0 and "stack 'web' has no Auto Scaling group 'other-group'" in err
    events = Events()
    with pytest.raises(Exception, match="Auto Scaling group 'ghost' does not exist"):
        run_cycle(adapter(cloud), options_from(FAST), group="ghost", emit=events)
    assert [t for t, _ in events] == ["phoenix/rebuild/ghost/failed"]


# -- salt-call --local pointed at localcloud -------------------------------------------------------------
@pytest.fixture(scope="module")
def salt_local(tmp_path_factory):
    root = tmp_path_factory.mktemp("salt-local-lc")
    conf = root / "conf"
    conf.mkdir()
    base = {"id": "rebuild-lc", "file_client": "local", "root_dir": str(root),
            "file_roots": {"base": [str(REPO / "salt")]}, "module_dirs": [str(REPO / "_modules")],
            "states_dirs": [str(REPO / "_states")], "utils_dirs": [str(REPO / "_utils")]}
    env = {**os.environ, **CREDS}

    def run(cloud, *args: str, check: bool = True):
        (conf / "minion").write_text(yaml.safe_dump({
            **base, "phoenix": {"aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2}}}))
        return devtools_salt_call(conf, *args, env=env, timeout=600, log_level="info", check=check)

    return run


# -- settings only in a real pillar file (pillar_roots + top.sls), issue 7 item 2 ----------------------
@pytest.fixture(scope="module")
def pillar_local(tmp_path_factory):
    """``salt-call --local`` whose minion config has no ``phoenix`` key: every setting comes from pillar files.

    The environment points boto3's own defaults elsewhere (region eu-west-3, endpoint a closed loopback
    port): a setting that did not come from pillar shows up as a wrong region or an unreachable endpoint,
    never as traffic off this machine.
    """
    from devtools.nginx import free_port
    from devtools.saltcall import write_minion_config

    root = tmp_path_factory.mktemp("salt-pillar-lc")
    conf = write_minion_config(root, REPO, extra={"id": "rebuild-pillar"})
    assert "phoenix" not in yaml.safe_load((conf / "minion").read_text())
    (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - phoenix\n")
    env = {**os.environ, **CREDS, "AWS_DEFAULT_REGION": "eu-west-3",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}

    def run(pillar: dict[str, Any], *args: str, **env_changes: str):
        (root / "pillar" / "phoenix.sls").write_text(yaml.safe_dump({"phoenix": pillar}))
        return devtools_salt_call(conf, *args, env={**env, **env_changes}, timeout=300)

    return run


def test_salt_call_reads_region_endpoint_and_stack_from_a_pillar_file(cloud, provisioner, aws_clients,
                                                                      pillar_local):
    fleet = make_fleet(cloud, provisioner, aws_clients)
    pillar = {"aws": {"region": "us-east-1", "endpoint_url": cloud.endpoint, "max_attempts": 2},
              "rebuild": {"stack": fleet["stack"], "max_age": "12h"}}
    cloud.api_calls(reset=True)
    rc, out, err = pillar_local(pillar, "rebuild.status")  # no stack=, no region=, no endpoint_url=
    assert rc == 0, err
    assert out["stack"] == fleet["stack"] and out["group"] == fleet["group"] and out["count"] == 4
    assert out["max_age_seconds"] == 12 * 3600  # phoenix:rebuild:max_age
    assert cloud.api_calls().get("cloudformation:DescribeStacks")  # the calls reached localcloud
    # the region really is pillar's: the same fleet is not found when pillar names another one
    wrong = {**pillar, "aws": {**pillar["aws"], "region": "ap-south-1"}}
    rc, _, err = pillar_local(wrong, "rebuild.status")
    assert rc != 0 and f"CloudFormation stack '{fleet['stack']}' does not exist" in err


def test_salt_call_without_a_region_refuses_before_any_aws_call(cloud, provisioner, aws_clients, pillar_local):
    from phoenix.aws import NO_REGION

    fleet = make_fleet(cloud, provisioner, aws_clients)
    pillar = {"aws": {"endpoint_url": cloud.endpoint, "max_attempts": 2}, "rebuild": {"stack": fleet["stack"]}}
    ambient = {"AWS_DEFAULT_REGION": "us-east-1"}  # boto3's default region would find the fleet
    cloud.api_calls(reset=True)
    for fn in ("rebuild.status", "rebuild.preflight", "rebuild.cycle"):
        rc, out, err = pillar_local(pillar, fn, **ambient)
        assert rc != 0 and NO_REGION in err, (fn, out, err)
        assert "Traceback" not in err
    assert cloud.api_calls() == {}  # refused before boto3 was ever asked
    # asking for the ambient region is the documented way out (pillar.example: ambient_region)
    allowed = {**pillar, "aws": {**pillar["aws"], "ambient_region": True}}
    rc, out, err = pillar_local(allowed, "rebuild.status", **ambient)
    assert rc == 0 and out["group"] == fleet["group"], err

