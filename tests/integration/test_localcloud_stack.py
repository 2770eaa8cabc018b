"""localcloud: CloudFormation rolling updates (RebuildTimestamp), rollback on abandoned replacements,
stack policy enforcement and the sample template. Real moto server, real boto3, no mocks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud import LocalCloud
from localcloud.testing import Provisioner, client, wait_until

TEMPLATE = Path(__file__).resolve().parents[2] / "localcloud" / "templates" / "web-fleet.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"  # the project venv's
BASE = {"RebuildTimestamp": "2026-01-01T00:00:00Z", "ImageId": "ami-12c6146b", "InstanceType": "t3.micro",
        "MinSize": "1", "MaxSize": "6", "DesiredCapacity": "4", "RollingMaxBatchSize": "2",
        "RollingMinInstancesInService": "3", "HookHeartbeatTimeout": "600"}
ALLOW_FLEET_ONLY = json.dumps({"Statement": [
    {"Effect": "Allow", "Principal": "*", "Action": "Update:Modify",
     "Resource": ["LogicalResourceId/WebGroup", "LogicalResourceId/LaunchTemplate"]},
]})


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(boot_seconds=0.1) as running:
        yield running


@pytest.fixture
def aws(cloud: LocalCloud) -> dict[str, Any]:
    return {name: client(cloud.endpoint, name) for name in ("autoscaling", "ec2", "sqs", "cloudformation")}


def params(values: dict[str, str], previous: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
    return out + [{"ParameterKey": k, "UsePreviousValue": True} for k in previous]


def outputs(aws: dict[str, Any], stack: str = "web") -> dict[str, str]:
    found = aws["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def group(aws: dict[str, Any], name: str) -> dict[str, Any]:
    return aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def stack_status(aws: dict[str, Any], stack: str = "web") -> str:
    return aws["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]


def settled(aws: dict[str, Any], stack: str = "web") -> str | None:
    status = stack_status(aws, stack)
    return None if status.endswith("IN_PROGRESS") else status


def events(aws: dict[str, Any], stack: str = "web") -> list[dict[str, Any]]:
    return list(reversed(aws["cloudformation"].describe_stack_events(StackName=stack)["StackEvents"]))


def create_fleet(aws: dict[str, Any], **overrides: str) -> tuple[str, str]:
    values = {**BASE, **overrides}
    aws["cloudformation"].create_stack(StackName="web", TemplateBody=TEMPLATE.read_text(),
                                       Parameters=params(values), Capabilities=["CAPABILITY_IAM"])
    out = outputs(aws)
    return out["GroupName"], out["HookQueueUrl"]


def in_service(aws: dict[str, Any], name: str, count: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        instances = group(aws, name)["Instances"]
        ok = len(instances) == count and all(i["LifecycleState"] == "InService" for i in instances)
        return instances if ok else None

    return wait_until(ready, message=f"{count} InService instances in {name}")


def update_timestamp(aws: dict[str, Any], stamp: str) -> None:
    aws["cloudformation"].update_stack(
        StackName="web", UsePreviousTemplate=True, Capabilities=["CAPABILITY_IAM"],
        Parameters=params({"RebuildTimestamp": stamp}, tuple(k for k in BASE if k != "RebuildTimestamp")))


def test_sample_template_passes_cfn_lint() -> None:
    result = subprocess.run([str(CFN_LINT), str(TEMPLATE)], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_create_applies_the_hook_and_reports_resource_events(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = create_fleet(aws, DesiredCapacity="2")
    hooks = aws["autoscaling"].describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    assert [(h["LifecycleHookName"], h["DefaultResult"], h["HeartbeatTimeout"]) for h in hooks] == [
        ("provision", "ABANDON", 600)]
    assert hooks[0]["NotificationTargetARN"] == outputs(aws)["HookQueueArn"]
    wait_until(lambda: [i["LifecycleState"] for i in group(aws, name)["Instances"]] == ["Pending:Wait"] * 2,
               message="the first instances to wait for provisioning")
    with Provisioner(cloud.endpoint, queue):
        in_service(aws, name, 2)
    seen = {(e["LogicalResourceId"], e["ResourceStatus"]) for e in events(aws)}
    for logical_id in ("HookQueue", "LaunchTemplate", "WebGroup"):
        assert (logical_id, "CREATE_COMPLETE") in seen
    assert stack_status(aws) == "CREATE_COMPLETE"


def test_rolling_update_of_four_keeps_min_instances_in_service(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = create_fleet(aws)
    aws["cloudformation"].set_stack_policy(StackName="web", StackPolicyBody=ALLOW_FLEET_ONLY)
    with Provisioner(cloud.endpoint, queue) as provisioner:
        old = {i["InstanceId"] for i in in_service(aws, name, 4)}
        started = cloud.clock.now()
        calls_before = cloud.api_calls()
        update_timestamp(aws, "2026-01-02T00:00:00Z")
        assert stack_status(aws) == "UPDATE_IN_PROGRESS"
        assert wait_until(lambda: settled(aws), message="the update to finish") == "UPDATE_COMPLETE"
        instances = in_service(aws, name, 4)
    new = {i["InstanceId"] for i in instances}
    assert not old & new
    assert {i["LaunchTemplate"]["Version"] for i in instances} == {"2"}
    assert group(aws, name)["LaunchTemplate"]["Version"] == "2"
    assert {n["EC2InstanceId"] for n in provisioner.messages if "EC2InstanceId" in n} >= new
    during = [e for e in cloud.timeline(name) if e["time"] >= started]
    assert during and min(e["in_service"] for e in during) >= 3  # MinInstancesInService
    assert max(e["instances"] for e in during) <= 6  # MaxSize
    tags = aws["ec2"].describe_tags(Filters=[{"Name": "resource-id", "Values": sorted(new)},
                                             {"Name": "key", "Values": ["RebuildTimestamp"]}])["Tags"]
    assert {t["Value"] for t in tags} == {"2026-01-02T00:00:00Z"}
    statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events(aws)]
    tail = statuses[statuses.index(("web", "UPDATE_IN_PROGRESS")):]
    assert ("LaunchTemplate", "UPDATE_COMPLETE") in tail and ("WebGroup", "UPDATE_IN_PROGRESS") in tail
    assert tail[-3:] == [("WebGroup", "UPDATE_COMPLETE"), ("web", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
                         ("web", "UPDATE_COMPLETE")]
    stack = aws["cloudformation"].describe_stacks(StackName="web")["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["RebuildTimestamp"] == \
        "2026-01-02T00:00:00Z"
    assert outputs(aws)["GroupName"] == name  # the group keeps its name
    used = {k: v - calls_before.get(k, 0) for k, v in cloud.api_calls().items()}
    assert used["cloudformation:UpdateStack"] == 1


def test_use_previous_value_works_for_parameters_that_took_defaults(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    values = {k: v for k, v in BASE.items() if k not in ("HookHeartbeatTimeout", "InstanceType")}
    values["DesiredCapacity"] = "1"
    aws["cloudformation"].create_stack(StackName="web", TemplateBody=TEMPLATE.read_text(), Parameters=params(values),
                                       Capabilities=["CAPABILITY_IAM"])
    name, queue = outputs(aws)["GroupName"], outputs(aws)["HookQueueUrl"]
    with Provisioner(cloud.endpoint, queue):
        in_service(aws, name, 1)
        update_timestamp(aws, "2026-01-03T00:00:00Z")
        assert wait_until(lambda: settled(aws), message="the update to finish") == "UPDATE_COMPLETE"


def test_abandoned_replacement_without_signals_is_replaced_and_the_update_goes_on(cloud: LocalCloud,
                                                                                   aws: dict[str, Any]) -> None:
    """Default (AWS without WaitOnResourceSignals): the group launches another instance for an abandoned one and
    the rolling update carries on; it does not fail or roll back."""
    name, queue = create_fleet(aws)
    first = []

    def abandon_first_new(message: dict[str, Any]) -> str:
        found = aws["autoscaling"].describe_auto_scaling_instances(InstanceIds=[message["EC2InstanceId"]])
        version = found["AutoScalingInstances"][0]["LaunchTemplate"]["Version"]
        if version != "1" and not first:
            first.append(message["EC2InstanceId"])
            return "ABANDON"
        return "CONTINUE"

    assert cloud.rolling_abandon == "replace"
    with Provisioner(cloud.endpoint, queue, decide=abandon_first_new):
        in_service(aws, name, 4)
        update_timestamp(aws, "2026-01-02T00:00:00Z")
        assert wait_until(lambda: settled(aws), timeout=60, message="the update") == "UPDATE_COMPLETE"
        instances = in_service(aws, name, 4)
    assert first and first[0] not in {i["InstanceId"] for i in instances}
    assert {i["LaunchTemplate"]["Version"] for i in instances} == {"2"}


def test_rollback_when_replacements_are_abandoned(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    """LocalCloud(rolling_abandon="fail"): an abandoned launch fails the update at once, which rolls back."""
    cloud.rolling_abandon = "fail"
    try:
        _rollback_when_replacements_are_abandoned(cloud, aws)
    finally:
        cloud.rolling_abandon = "replace"


def _rollback_when_replacements_are_abandoned(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = create_fleet(aws)

    def only_old_version(message: dict[str, Any]) -> str:
        found = aws["autoscaling"].describe_auto_scaling_instances(InstanceIds=[message["EC2InstanceId"]])
        version = found["AutoScalingInstances"][0]["LaunchTemplate"]["Version"]
        return "CONTINUE" if version == "1" else "ABANDON"

    with Provisioner(cloud.endpoint, queue, decide=only_old_version) as provisioner:
        old = {i["InstanceId"] for i in in_service(aws, name, 4)}
        update_timestamp(aws, "2026-01-02T00:00:00Z")
        assert wait_until(lambda: settled(aws), timeout=60, message="the rollback") == "UPDATE_ROLLBACK_COMPLETE"
        instances = in_service(aws, name, 4)
    assert ("ABANDON" in {result for _, result in provisioner.completed})
    assert {i["LaunchTemplate"]["Version"] for i in instances} == {"1"}
    current = group(aws, name)
    assert current["LaunchTemplate"]["Version"] == "1" and current["DesiredCapacity"] == 4
    assert current["AutoScalingGroupName"] == name
    remaining_old = old & {i["InstanceId"] for i in instances}
    assert remaining_old  # the first batch failed: the rest of the old fleet kept serving
    reasons = [e.get("ResourceStatusReason") or "" for e in events(aws) if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert reasons and "abandoned" in reasons[0]
    statuses = [e["ResourceStatus"] for e in events(aws) if e["LogicalResourceId"] == "web"]
    assert statuses[-3:] == ["UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
                             "UPDATE_ROLLBACK_COMPLETE"]
    stack = aws["cloudformation"].describe_stacks(StackName="web")["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["RebuildTimestamp"] == \
        BASE["RebuildTimestamp"]
    timeline = cloud.timeline(name)
    assert timeline[-1]["in_service"] == 4


def test_stack_policy_refuses_an_update_of_another_resource(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = create_fleet(aws, DesiredCapacity="1")
    aws["cloudformation"].set_stack_policy(StackName="web", StackPolicyBody=ALLOW_FLEET_ONLY)
    assert json.loads(aws["cloudformation"].get_stack_policy(StackName="web")["StackPolicyBody"]) == \
        json.loads(ALLOW_FLEET_ONLY)
    with Provisioner(cloud.endpoint, queue):
        before = {i["InstanceId"] for i in in_service(aws, name, 1)}
    changed = TEMPLATE.read_text().replace("MessageRetentionPeriod: 3600", "MessageRetentionPeriod: 7200")
    aws["cloudformation"].update_stack(StackName="web", TemplateBody=changed, Capabilities=["CAPABILITY_IAM"],
                                       Parameters=params({}, tuple(BASE)))
    assert wait_until(lambda: settled(aws), message="the refused update") == "UPDATE_ROLLBACK_COMPLETE"
    failed = [e for e in events(aws) if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert failed[0]["LogicalResourceId"] == "HookQueue"
    assert "denied by stack policy" in failed[0]["ResourceStatusReason"]
    assert {i["InstanceId"] for i in group(aws, name)["Instances"]} == before
    template = aws["cloudformation"].get_template(StackName="web")["TemplateBody"]
    assert "MessageRetentionPeriod: 3600" in str(template)


def test_update_without_changes_is_refused(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    create_fleet(aws, DesiredCapacity="1")
    with pytest.raises(ClientError) as raised:
        aws["cloudformation"].update_stack(StackName="web", UsePreviousTemplate=True, Capabilities=["CAPABILITY_IAM"],
                                           Parameters=params({}, tuple(BASE)))
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "No updates are to be performed" in raised.value.response["Error"]["Message"]


def _create_variant(aws: dict[str, Any], replace: dict[str, str], **overrides: str) -> tuple[str, str]:
    body = TEMPLATE.read_text()
    for old, new in replace.items():
        assert old in body
        body = body.replace(old, new)
    aws["cloudformation"].create_stack(StackName="web", TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                                       Parameters=params({**BASE, **overrides}))
    out = outputs(aws)
    return out["GroupName"], out["HookQueueUrl"]


def test_pause_time_waits_on_the_virtual_clock(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = _create_variant(aws, {"PauseTime: PT0S": "PauseTime: PT10M"})
    with Provisioner(cloud.endpoint, queue):
        in_service(aws, name, 4)
        update_timestamp(aws, "2026-01-02T00:00:00Z")

        def first_batch_done() -> bool:
            return any("Progress 50%" in (e.get("ResourceStatusReason") or "") for e in events(aws))

        wait_until(first_batch_done, message="the first batch")
        versions = [i["LaunchTemplate"]["Version"] for i in group(aws, name)["Instances"]]
        assert stack_status(aws) == "UPDATE_IN_PROGRESS" and versions.count("2") == 2
        cloud.advance(600)
        wait_until(lambda: any("Progress 100%" in (e.get("ResourceStatusReason") or "") for e in events(aws)),
                   message="the second batch after the pause")
        assert stack_status(aws) == "UPDATE_IN_PROGRESS"  # pausing after the last batch too
        cloud.advance(600)
        assert wait_until(lambda: settled(aws), message="the update") == "UPDATE_COMPLETE"


def test_wait_on_resource_signals(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = _create_variant(aws, {"WaitOnResourceSignals: false": "WaitOnResourceSignals: true",
                                        "PauseTime: PT0S": "PauseTime: PT5M"})

    def continue_and_signal(message: dict[str, Any]) -> str:
        aws["cloudformation"].signal_resource(StackName="web", LogicalResourceId="WebGroup",
                                              UniqueId=message["EC2InstanceId"], Status="SUCCESS")
        return "CONTINUE"

    with Provisioner(cloud.endpoint, queue, decide=continue_and_signal):
        in_service(aws, name, 4)
        update_timestamp(aws, "2026-01-02T00:00:00Z")
        assert wait_until(lambda: settled(aws), message="the signalled update") == "UPDATE_COMPLETE"
    with Provisioner(cloud.endpoint, queue):  # provisions, but never signals: PauseTime expires
        update_timestamp(aws, "2026-01-03T00:00:00Z")
        wait_until(lambda: any("Waiting on" in (e.get("ResourceStatusReason") or "") and
                               e["Timestamp"].timestamp() > 0 for e in events(aws)[-3:]),
                   message="waiting for signals")
        cloud.advance(301)
        assert wait_until(lambda: settled(aws), message="the rollback") == "UPDATE_ROLLBACK_COMPLETE"
    failed = [e for e in events(aws) if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert "SUCCESS signal" in failed[-1]["ResourceStatusReason"]
    assert {i["LaunchTemplate"]["Version"] for i in group(aws, name)["Instances"]} == {"2"}


def test_cancel_update_stack_rolls_back(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = create_fleet(aws)
    with Provisioner(cloud.endpoint, queue):
        in_service(aws, name, 4)
    update_timestamp(aws, "2026-01-02T00:00:00Z")  # nobody provisions the new instances
    wait_until(lambda: [i for i in group(aws, name)["Instances"] if i["LifecycleState"] == "Pending:Wait"],
               message="a new instance waiting")
    aws["cloudformation"].cancel_update_stack(StackName="web")
    with Provisioner(cloud.endpoint, queue):
        assert wait_until(lambda: settled(aws), message="the rollback") == "UPDATE_ROLLBACK_COMPLETE"
        instances = in_service(aws, name, 4)
    assert {i["LaunchTemplate"]["Version"] for i in instances} == {"1"}
    reasons = [e.get("ResourceStatusReason") or "" for e in events(aws) if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert "CancelUpdateStack" in reasons[-1]
    with pytest.raises(ClientError) as raised:
        aws["cloudformation"].cancel_update_stack(StackName="web")
    assert raised.value.response["Error"]["Code"] == "ValidationError"


SMALL_FLEET = {
    "Parameters": {"Stamp": {"Type": "String"}},
    "Resources": {
        "Queue": {"Type": "AWS::SQS::Queue"},
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": "ami-12c6146b", "InstanceType": "t3.micro",
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Stamp", "Value": {"Ref": "Stamp"}}]}]}}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
            "AvailabilityZones": ["us-east-1a"], "MinSize": "1", "MaxSize": "3", "DesiredCapacity": "1",
            "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"},
                               "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}}}},
        "Hook": {"Type": "AWS::AutoScaling::LifecycleHook", "Properties": {
            "AutoScalingGroupName": {"Ref": "Group"}, "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
            "DefaultResult": "ABANDON", "HeartbeatTimeout": 300,
            "NotificationTargetARN": {"Fn::GetAtt": ["Queue", "Arn"]},
            "RoleARN": "arn:aws:iam::123456789012:role/hooks"}},
    },
}


def test_lifecycle_hook_resource_applies_to_later_launches(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    aws["cloudformation"].create_stack(StackName="small", TemplateBody=json.dumps(SMALL_FLEET),
                                       Parameters=params({"Stamp": "a"}))
    name = aws["autoscaling"].describe_auto_scaling_groups()["AutoScalingGroups"][0]["AutoScalingGroupName"]
    hooks = aws["autoscaling"].describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    assert hooks[0]["LifecycleHookName"] == "small-Hook" and hooks[0]["NotificationTargetARN"].startswith("arn:aws:sqs")
    in_service(aws, name, 1)  # launched before the hook existed, as in AWS
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    wait_until(lambda: sorted(i["LifecycleState"] for i in group(aws, name)["Instances"]) == ["InService", "Pending:Wait"],
               message="the new instance to wait for the hook")


def test_stack_policy_during_update_overrides_the_policy(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    deny_all = json.dumps({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "Update:*", "Resource": "*"}]})
    allow_all = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}]})
    aws["cloudformation"].create_stack(StackName="small", TemplateBody=json.dumps(SMALL_FLEET),
                                       Parameters=params({"Stamp": "a"}), StackPolicyBody=deny_all)
    name = aws["autoscaling"].describe_auto_scaling_groups()["AutoScalingGroups"][0]["AutoScalingGroupName"]
    in_service(aws, name, 1)
    aws["cloudformation"].update_stack(StackName="small", UsePreviousTemplate=True, Parameters=params({"Stamp": "b"}))
    assert wait_until(lambda: settled(aws, "small"), message="refusal") == "UPDATE_ROLLBACK_COMPLETE"
    denied = [e for e in events(aws, "small") if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert "Deny" in denied[0]["ResourceStatusReason"]
    aws["cloudformation"].update_stack(StackName="small", UsePreviousTemplate=True, Parameters=params({"Stamp": "b"}),
                                       StackPolicyDuringUpdateBody=allow_all)
    assert wait_until(lambda: settled(aws, "small"), message="the update") == "UPDATE_COMPLETE"
    # no UpdatePolicy: the group points at the new version, running instances stay
    assert group(aws, name)["LaunchTemplate"]["Version"] == "2"


def test_other_updates_go_to_moto_with_resource_events(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    template = {"Parameters": {"Visibility": {"Type": "Number", "Default": 30}},
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue",
                                        "Properties": {"VisibilityTimeout": {"Ref": "Visibility"}}}}}
    aws["cloudformation"].create_stack(StackName="queue", TemplateBody=json.dumps(template))
    aws["cloudformation"].update_stack(StackName="queue", TemplateBody=json.dumps(template),
                                       Parameters=params({"Visibility": "60"}))
    assert wait_until(lambda: settled(aws, "queue"), message="the update") == "UPDATE_COMPLETE"
    statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events(aws, "queue")]
    assert statuses[-3:] == [("Queue", "UPDATE_IN_PROGRESS"), ("Queue", "UPDATE_COMPLETE"), ("queue", "UPDATE_COMPLETE")]
    stack = aws["cloudformation"].describe_stacks(StackName="queue")["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {"Visibility": "60"}


def test_changes_are_found_through_sub_ref_and_getatt() -> None:
    from localcloud.cfn_template import changed_resources

    template = {"Resources": {
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "UserData": {"Fn::Base64": {"Fn::Sub": "stamp=${RebuildTimestamp} ${!Literal}"}}}}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {"LaunchTemplate": {
            "LaunchTemplateId": {"Ref": "Template"}, "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}}}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"Tags": [{"Key": "t", "Value": {"Ref": "Template"}}]}},
    }}
    assert changed_resources(template, template, {"RebuildTimestamp": "a"}, {"RebuildTimestamp": "b"}) == {
        "Template": "Modify", "Group": "Modify"}  # Ref of an updated (not replaced) resource is unchanged
    assert changed_resources(template, template, {"RebuildTimestamp": "a"}, {"RebuildTimestamp": "a"}) == {}


def test_stack_policy_statements() -> None:
    from localcloud.stack_policy import denial

    policy = {"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "NotResource": "LogicalResourceId/Database"},
        {"Effect": "Deny", "Principal": "*", "Action": "Update:Replace", "Resource": "*",
         "Condition": {"StringEquals": {"ResourceType": ["AWS::EC2::LaunchTemplate"]}}},
    ]}
    assert denial(policy, "Update:Modify", "WebGroup", "AWS::AutoScaling::AutoScalingGroup") is None
    assert denial(policy, "Update:Modify", "Database", "AWS::RDS::DBInstance") is not None
    assert denial(policy, "Update:Replace", "Template", "AWS::EC2::LaunchTemplate") is not None
    assert denial(policy, "Update:Modify", "Template", "AWS::EC2::LaunchTemplate") is None
    assert denial(None, "Update:Delete", "Anything", "AWS::SQS::Queue") is None


def test_reset_during_a_rolling_update_leaves_the_next_fleet_alone(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = create_fleet(aws)
    with Provisioner(cloud.endpoint, queue):
        in_service(aws, name, 4)
    update_timestamp(aws, "2026-01-02T00:00:00Z")  # nobody provisions: the update waits
    wait_until(lambda: any(i["LifecycleState"] == "Pending:Wait" for i in group(aws, name)["Instances"]),
               message="the update to wait on a new instance")
    cloud.reset()
    name, queue = create_fleet(aws)
    with Provisioner(cloud.endpoint, queue):
        first = {i["InstanceId"] for i in in_service(aws, name, 4)}
        cloud.advance(3600)  # timers of the old update, if any were left, would fire now
        assert {i["InstanceId"] for i in in_service(aws, name, 4)} == first
    assert stack_status(aws) == "CREATE_COMPLETE"
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("localcloud-update")],
               message="the stale update thread to end")


# -- fidelity with AWS's documentation (localcloud/README.md, "Fidelity") ------------------------------
def test_update_changes_only_the_tags_the_template_declares(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    name, queue = create_fleet(aws)
    aws["autoscaling"].create_or_update_tags(Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group",
                                                    "Key": "operator", "Value": "kept", "PropagateAtLaunch": False}])
    with Provisioner(cloud.endpoint, queue):
        in_service(aws, name, 4)
        update_timestamp(aws, "2026-01-02T00:00:00Z")
        assert wait_until(lambda: settled(aws), timeout=60, message="the update") == "UPDATE_COMPLETE"
    tags = {t["Key"]: t["Value"] for t in group(aws, name)["Tags"]}
    assert tags["operator"] == "kept" and tags["Name"] == "web-web"


def test_update_stack_refuses_a_bad_pause_time(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    create_fleet(aws)
    for pause, expected in (("PT2H", "longer than the maximum of PT1H"), ("5 minutes", "ISO 8601")):
        body = TEMPLATE.read_text().replace("PauseTime: PT0S", f"PauseTime: {pause}")
        with pytest.raises(ClientError, match=expected):
            aws["cloudformation"].update_stack(StackName="web", TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                                               Parameters=params({**BASE, "RebuildTimestamp": "x"}))
    assert stack_status(aws) == "CREATE_COMPLETE"


def test_set_stack_policy_refuses_invalid_json(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    create_fleet(aws)
    with pytest.raises(ClientError, match="Error parsing stack policy"):
        aws["cloudformation"].set_stack_policy(StackName="web", StackPolicyBody="{not json")
    assert "StackPolicyBody" not in aws["cloudformation"].get_stack_policy(StackName="web")


def test_update_stack_is_refused_in_update_rollback_failed(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    from localcloud import motoaccess

    create_fleet(aws)
    with cloud.lock:
        motoaccess.cloudformation(cloud.region).get_stack("web").status = "UPDATE_ROLLBACK_FAILED"
    with pytest.raises(ClientError, match="is in UPDATE_ROLLBACK_FAILED state and can not be updated"):
        update_timestamp(aws, "2026-01-02T00:00:00Z")


def test_duplicate_lifecycle_notifications_can_be_turned_on() -> None:
    with LocalCloud(boot_seconds=0.1, duplicate_notifications=1.0) as dup:
        local = {n: client(dup.endpoint, n) for n in ("cloudformation", "sqs")}
        local["cloudformation"].create_stack(StackName="web", TemplateBody=TEMPLATE.read_text(),
                                             Parameters=params(BASE), Capabilities=["CAPABILITY_IAM"])
        queue = outputs(local)["HookQueueUrl"]
        seen: list[str] = []

        def tokens() -> bool:
            for raw in local["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                body = json.loads(raw["Body"])
                if "LifecycleActionToken" in body:
                    seen.append(body["LifecycleActionToken"])
            return len(seen) >= 8

        wait_until(tokens, timeout=30, message="8 notifications")
    assert len(set(seen)) * 2 == len(seen)  # every notification arrived twice, same token
