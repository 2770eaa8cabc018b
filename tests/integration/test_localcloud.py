"""localcloud: Auto Scaling lifecycle, SQS notifications, clock, timeline, call counter, agent hook and
the ``python -m localcloud`` command. Real moto server, real boto3, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud import LocalCloud, SubprocessAgent
from localcloud.testing import client, wait_until

AMI = "ami-12c6146b"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(boot_seconds=0.1) as running:
        yield running


@pytest.fixture
def aws(cloud: LocalCloud) -> dict[str, Any]:
    return {name: client(cloud.endpoint, name) for name in ("autoscaling", "ec2", "sqs", "iam", "cloudformation")}


def make_queue(aws: dict[str, Any], name: str = "hooks") -> tuple[str, str]:
    url = aws["sqs"].create_queue(QueueName=name)["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def make_group(aws: dict[str, Any], name: str = "web", desired: int = 1, max_size: int = 4, **extra: Any) -> None:
    aws["ec2"].create_launch_template(LaunchTemplateName=f"{name}-lt",
                                      LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=max_size, DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"},
        AvailabilityZones=["us-east-1a"], **extra)


def put_hook(aws: dict[str, Any], queue_arn: str, group: str = "web", transition: str = LAUNCHING,
             name: str = "provision", timeout: int = 300, default: str = "ABANDON") -> None:
    aws["autoscaling"].put_lifecycle_hook(
        AutoScalingGroupName=group, LifecycleHookName=name, LifecycleTransition=transition,
        NotificationTargetARN=queue_arn, RoleARN="arn:aws:iam::123456789012:role/hooks",
        HeartbeatTimeout=timeout, DefaultResult=default, NotificationMetadata='{"env": "test"}')


def states(aws: dict[str, Any], group: str = "web") -> dict[str, str]:
    found = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {i["InstanceId"]: i["LifecycleState"] for i in found[0]["Instances"]} if found else {}


def receive(aws: dict[str, Any], url: str) -> list[dict[str, Any]]:
    raw = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in raw:
        aws["sqs"].delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in raw]


def lifecycle_messages(aws: dict[str, Any], url: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        got.extend(m for m in receive(aws, url) if "LifecycleActionToken" in m)
        return len(got) >= count

    wait_until(enough, message=f"{count} lifecycle notification(s)")
    return got


def test_instance_waits_in_pending_wait_until_continue(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    url, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn)
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
    (instance_id,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "Pending:Wait"],
                                message="Pending:Wait")
    cloud.advance(120)  # well inside the 300 s heartbeat timeout: still waiting
    assert states(aws) == {instance_id: "Pending:Wait"}
    (message,) = lifecycle_messages(aws, url, 1)
    aws["autoscaling"].complete_lifecycle_action(
        AutoScalingGroupName="web", LifecycleHookName="provision",
        LifecycleActionToken=message["LifecycleActionToken"], LifecycleActionResult="CONTINUE")
    wait_until(lambda: states(aws) == {instance_id: "InService"}, message="InService")
    described = aws["autoscaling"].describe_auto_scaling_instances(InstanceIds=[instance_id])
    assert described["AutoScalingInstances"][0]["LifecycleState"] == "InService"
    assert described["AutoScalingInstances"][0]["LaunchTemplate"]["Version"] == "1"
    with pytest.raises(ClientError) as raised:  # the action is closed now
        aws["autoscaling"].complete_lifecycle_action(
            AutoScalingGroupName="web", LifecycleHookName="provision",
            LifecycleActionToken=message["LifecycleActionToken"], LifecycleActionResult="CONTINUE")
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    timeline = cloud.timeline("web")
    assert timeline[-1]["in_service"] == 1
    assert [e["in_service"] for e in timeline].count(1) >= 1 and timeline[0]["in_service"] == 0


def test_launch_time_comes_from_the_controllable_clock(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    cloud.advance(86400 * 3)
    make_group(aws, desired=1)
    (instance_id,) = wait_until(lambda: list(states(aws)), message="an instance")
    reservation = aws["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    launched = reservation["Instances"][0]["LaunchTime"].timestamp()
    assert abs(launched - cloud.clock.now()) < 60
    assert launched - time.time() > 86400 * 2
    # responses are dated by the same clock, so "age = Date header - LaunchTime" works as against AWS
    from email.utils import parsedate_to_datetime

    headers = aws["ec2"].describe_instances(InstanceIds=[instance_id])["ResponseMetadata"]["HTTPHeaders"]
    assert abs(parsedate_to_datetime(headers["date"]).timestamp() - cloud.clock.now()) < 60


def test_abandon_by_instance_id_terminates_and_launches_a_replacement(cloud: LocalCloud,
                                                                       aws: dict[str, Any]) -> None:
    url, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn)
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
    (first,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "Pending:Wait"], message="Pending:Wait")
    aws["autoscaling"].complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="provision",
                                                 InstanceId=first, LifecycleActionResult="ABANDON")
    replacement = wait_until(lambda: [i for i, s in states(aws).items() if i != first and s == "Pending:Wait"],
                             message="a replacement in Pending:Wait")
    assert first not in states(aws)
    ec2_state = aws["ec2"].describe_instances(InstanceIds=[first])["Reservations"][0]["Instances"][0]["State"]
    assert ec2_state["Name"] == "terminated"
    assert len(replacement) == 1
    assert {r["instance_id"]: r["end_reason"] for r in cloud.instances("web")}[first] == "abandoned"


def test_heartbeat_extends_the_timeout_then_default_result_applies(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    url, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn, timeout=300, default="ABANDON")
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
    (first,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "Pending:Wait"], message="Pending:Wait")
    (message,) = lifecycle_messages(aws, url, 1)
    cloud.advance(200)
    aws["autoscaling"].record_lifecycle_action_heartbeat(
        AutoScalingGroupName="web", LifecycleHookName="provision", LifecycleActionToken=message["LifecycleActionToken"])
    cloud.advance(200)  # 400 s after launch, 200 s after the heartbeat: still waiting
    assert states(aws)[first] == "Pending:Wait"
    cloud.advance(150)  # 350 s after the heartbeat: DefaultResult ABANDON
    wait_until(lambda: first not in states(aws), message="the timed-out instance to be abandoned")
    wait_until(lambda: len(states(aws)) == 1, message="a replacement")


def test_heartbeat_timeout_with_default_continue_goes_in_service(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    _, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn, timeout=60, default="CONTINUE")
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
    (first,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "Pending:Wait"], message="Pending:Wait")
    cloud.advance(61)
    wait_until(lambda: states(aws) == {first: "InService"}, message="InService after the timeout")


def test_notifications_use_the_aws_format_and_a_test_notification(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    url, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn)
    (test_message,) = wait_until(lambda: receive(aws, url), message="TEST_NOTIFICATION")
    assert test_message["Event"] == "autoscaling:TEST_NOTIFICATION"
    assert test_message["AutoScalingGroupName"] == "web"
    assert test_message["AccountId"] == "123456789012" and test_message["Service"] == "AWS Auto Scaling"
    hooks = aws["autoscaling"].describe_lifecycle_hooks(AutoScalingGroupName="web")["LifecycleHooks"]
    assert hooks[0]["NotificationTargetARN"] == arn and hooks[0]["DefaultResult"] == "ABANDON"
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=2)
    messages = lifecycle_messages(aws, url, 2)
    instance_ids = set(states(aws))
    for message in messages:
        assert set(message) >= {"LifecycleHookName", "AccountId", "RequestId", "LifecycleTransition",
                                "AutoScalingGroupName", "Service", "Time", "EC2InstanceId",
                                "LifecycleActionToken", "NotificationMetadata"}
        assert message["LifecycleTransition"] == LAUNCHING
        assert message["LifecycleHookName"] == "provision"
        assert message["NotificationMetadata"] == '{"env": "test"}'
        assert message["Time"].endswith("Z")
    assert {m["EC2InstanceId"] for m in messages} == instance_ids


def test_terminating_hook_holds_the_instance_in_terminating_wait(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    url, arn = make_queue(aws)
    make_group(aws, desired=2)
    wait_until(lambda: list(states(aws).values()) == ["InService", "InService"], message="2 InService")
    put_hook(aws, arn, transition=TERMINATING, name="drain", timeout=120, default="CONTINUE")
    victim = sorted(states(aws))[0]
    reply = aws["autoscaling"].terminate_instance_in_auto_scaling_group(
        InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    assert reply["Activity"]["AutoScalingGroupName"] == "web"
    assert states(aws)[victim] == "Terminating:Wait"
    (message,) = lifecycle_messages(aws, url, 1)
    assert message["LifecycleTransition"] == TERMINATING and message["EC2InstanceId"] == victim
    aws["autoscaling"].complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="drain",
                                                 InstanceId=victim, LifecycleActionResult="CONTINUE")
    wait_until(lambda: victim not in states(aws), message="the instance to leave")
    group = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1 and len(group["Instances"]) == 1


def test_unknown_group_and_stack_give_aws_error_codes(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    calls = [
        lambda: aws["autoscaling"].complete_lifecycle_action(
            AutoScalingGroupName="nope", LifecycleHookName="h", InstanceId="i-0", LifecycleActionResult="CONTINUE"),
        lambda: aws["autoscaling"].record_lifecycle_action_heartbeat(
            AutoScalingGroupName="nope", LifecycleHookName="h", InstanceId="i-0"),
        lambda: aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="nope", DesiredCapacity=1),
        lambda: aws["autoscaling"].update_auto_scaling_group(AutoScalingGroupName="nope", MaxSize=3),
        lambda: aws["autoscaling"].describe_lifecycle_hooks(AutoScalingGroupName="nope"),
        lambda: aws["autoscaling"].terminate_instance_in_auto_scaling_group(
            InstanceId="i-0123456789abcdef0", ShouldDecrementDesiredCapacity=False),
        lambda: aws["cloudformation"].update_stack(StackName="nope", UsePreviousTemplate=True),
        lambda: aws["cloudformation"].describe_stacks(StackName="nope"),
        lambda: aws["cloudformation"].describe_stack_events(StackName="nope"),
        lambda: aws["cloudformation"].get_stack_policy(StackName="nope"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as raised:
            call()
        assert raised.value.response["Error"]["Code"] == "ValidationError", raised.value
    assert aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["nope"])["AutoScalingGroups"] == []


def test_api_calls_are_counted_by_action(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    make_group(aws, desired=1)
    for _ in range(3):
        aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
    aws["sqs"].list_queues()
    calls = cloud.api_calls(reset=True)
    assert calls["autoscaling:DescribeAutoScalingGroups"] == 3
    assert calls["autoscaling:CreateAutoScalingGroup"] == 1
    assert calls["ec2:CreateLaunchTemplate"] == 1
    assert calls["sqs:ListQueues"] == 1
    assert cloud.api_calls() == {}


def test_http_control_interface(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(cloud.endpoint + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    assert call("GET", "/_localcloud/health")["endpoint"] == cloud.endpoint
    before = call("GET", "/_localcloud/clock")["now"]
    after = call("POST", "/_localcloud/clock/advance", {"seconds": 3600})["now"]
    assert after - before >= 3600
    make_group(aws, desired=2)
    wait_until(lambda: call("GET", "/_localcloud/timeline/web")["timeline"][-1]["in_service"] == 2,
               message="timeline over HTTP")
    assert len(call("GET", "/_localcloud/instances?group=web")["instances"]) == 2
    assert call("GET", "/_localcloud/api-calls")["calls"]["autoscaling:CreateAutoScalingGroup"] == 1
    assert call("POST", "/_localcloud/config", {"boot_seconds": 5})["boot_seconds"] == 5
    assert cloud.boot_seconds == 5 and call("GET", "/_localcloud/config")["region"] == "us-east-1"
    assert call("POST", "/_localcloud/reset")["ok"] is True
    assert aws["autoscaling"].describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert call("GET", "/_localcloud/instances")["instances"] == []


def test_instance_profile_from_launch_template_and_replacement(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    iam = aws["iam"]
    for name in ("launch", "runtime"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
        iam.create_instance_profile(InstanceProfileName=name)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    aws["ec2"].create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={
        "ImageId": AMI, "InstanceType": "t3.micro", "IamInstanceProfile": {"Name": "launch"}})
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName="web", MinSize=1, MaxSize=2, DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": "web-lt"}, AvailabilityZones=["us-east-1a"])
    (instance_id,) = wait_until(lambda: list(states(aws)), message="an instance")
    associations = aws["ec2"].describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}])["IamInstanceProfileAssociations"]
    assert associations[0]["IamInstanceProfile"]["Arn"].endswith("/launch")
    aws["ec2"].replace_iam_instance_profile_association(
        IamInstanceProfile={"Name": "runtime"}, AssociationId=associations[0]["AssociationId"])
    associations = aws["ec2"].describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}])["IamInstanceProfileAssociations"]
    assert associations[0]["IamInstanceProfile"]["Arn"].endswith("/runtime")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
            return stat.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # exited while we looked
        return False


def test_agent_hook_starts_and_stops_a_real_process_per_instance() -> None:
    agent = SubprocessAgent()
    with LocalCloud(boot_seconds=0.1, agent=agent) as cloud:
        asg = client(cloud.endpoint, "autoscaling")
        aws = {"autoscaling": asg, "ec2": client(cloud.endpoint, "ec2")}
        make_group(aws, desired=2)
        ids = wait_until(lambda: sorted(states(aws)) if len(states(aws)) == 2 else None, message="2 instances")
        pids = wait_until(lambda: agent.pids() if sorted(agent.pids()) == ids else None, message="2 agents")
        assert all(_alive(pid) for pid in pids.values())
        asg.terminate_instance_in_auto_scaling_group(InstanceId=ids[0], ShouldDecrementDesiredCapacity=True)
        wait_until(lambda: not _alive(pids[ids[0]]), message="the terminated instance's agent to stop")
        assert _alive(pids[ids[1]])
        survivor = pids[ids[1]]
    assert not _alive(survivor)  # stopping localcloud stops every agent
    assert agent.pids() == {}


def _run_command(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "localcloud", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    return proc, line


AGENT_SCRIPT = "import sys, time; time.sleep(3600)"


def _pids_with_argument(argument: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if argument.encode() in cmdline.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_command_prints_its_endpoint_and_stops_on_signal(signum: int, tmp_path: Any) -> None:
    import shlex

    if signum == signal.SIGTERM:
        agent = ["--agent-command", shlex.join([sys.executable, "-c", AGENT_SCRIPT, str(tmp_path)])]
    else:  # an agent object named MODULE:ATTR (a factory called without arguments)
        agent = ["--agent", "localcloud.agents:SubprocessAgent"]
    proc, endpoint = _run_command("--port", "0", "--boot-seconds", "0.1", *agent)
    try:
        assert endpoint.startswith("http://127.0.0.1:"), endpoint
        asg = client(endpoint, "autoscaling")
        aws = {"autoscaling": asg, "ec2": client(endpoint, "ec2")}
        make_group(aws, desired=1)
        (instance_id,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "InService"],
                                    message="InService via the command")
        (agent_pid,) = wait_until(lambda: _pids_with_argument(instance_id), message="the agent process")
        assert _alive(agent_pid)
    finally:
        proc.send_signal(signum)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, stderr
    assert "localcloud stopped" in stderr
    assert not _alive(agent_pid)  # agents are stopped with localcloud


def test_scale_in_goes_through_terminating_wait(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    url, arn = make_queue(aws)
    make_group(aws, desired=2)
    wait_until(lambda: list(states(aws).values()) == ["InService", "InService"], message="2 InService")
    put_hook(aws, arn, transition=TERMINATING, name="drain", timeout=60, default="CONTINUE")
    with pytest.raises(ClientError) as raised:
        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=9)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
    assert sorted(states(aws).values()) == ["InService", "Terminating:Wait"]
    cloud.advance(61)  # heartbeat timeout, DefaultResult CONTINUE: the termination proceeds
    wait_until(lambda: list(states(aws).values()) == ["InService"], message="one instance left")


def test_plain_services_pass_through_one_endpoint(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    s3 = client(cloud.endpoint, "s3")
    s3.create_bucket(Bucket="deploy")
    s3.put_object(Bucket="deploy", Key="web/sha", Body=b"0123abcd")
    assert s3.get_object(Bucket="deploy", Key="web/sha")["Body"].read() == b"0123abcd"
    ssm = client(cloud.endpoint, "ssm")
    ssm.put_parameter(Name="/phoenix/web/secret", Value="s3cr3t", Type="SecureString")
    found = ssm.get_parameters_by_path(Path="/phoenix/web", WithDecryption=True)["Parameters"]
    assert found[0]["Value"] == "s3cr3t"
    assert aws["iam"].create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["RoleName"] == "r"
    assert client(cloud.endpoint, "sts").get_caller_identity()["Account"] == "123456789012"


def test_sqs_long_poll_receives_a_notification_sent_meanwhile(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    import threading

    url, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn)
    receive(aws, url)  # drop the TEST_NOTIFICATION
    got: list[dict[str, Any]] = []
    poller = threading.Thread(target=lambda: got.extend(
        aws["sqs"].receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])))
    poller.start()
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)  # not blocked by the poll
    poller.join(timeout=15)
    assert not poller.is_alive()
    assert json.loads(got[0]["Body"])["LifecycleTransition"] == LAUNCHING


def test_two_launch_hooks_both_must_continue(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    _, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn, name="first")
    put_hook(aws, arn, name="second")
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
    (instance_id,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "Pending:Wait"], message="wait")
    aws["autoscaling"].complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="first",
                                                 InstanceId=instance_id, LifecycleActionResult="CONTINUE")
    assert states(aws) == {instance_id: "Pending:Wait"}
    aws["autoscaling"].complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="second",
                                                 InstanceId=instance_id, LifecycleActionResult="CONTINUE")
    wait_until(lambda: states(aws) == {instance_id: "InService"}, message="InService after both hooks")


def test_update_group_scale_in_spares_protected_instances(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    make_group(aws, desired=3)
    ids = wait_until(lambda: sorted(states(aws)) if list(states(aws).values()) == ["InService"] * 3 else None,
                     message="3 InService")
    oldest = [r["instance_id"] for r in cloud.instances("web")][0]
    aws["autoscaling"].set_instance_protection(AutoScalingGroupName="web", InstanceIds=[oldest],
                                               ProtectedFromScaleIn=True)
    aws["autoscaling"].update_auto_scaling_group(AutoScalingGroupName="web", DesiredCapacity=1)
    wait_until(lambda: list(states(aws)) == [oldest], message="only the protected instance left")
    gone = [r for r in cloud.instances("web") if r["instance_id"] != oldest]
    assert {r["end_reason"] for r in gone} == {"scale-in"} and len(gone) == len(ids) - 1
    assert cloud.timeline("web")[-1]["in_service"] == 1


def test_launch_configuration_groups_report_what_each_instance_was_launched_from(
        cloud: LocalCloud, aws: dict[str, Any]) -> None:
    iam = aws["iam"]
    iam.create_role(RoleName="launch", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="launch")
    for name in ("lc-1", "lc-2"):
        aws["autoscaling"].create_launch_configuration(LaunchConfigurationName=name, ImageId=AMI,
                                                       InstanceType="t3.micro", IamInstanceProfile="launch")
    aws["autoscaling"].create_auto_scaling_group(AutoScalingGroupName="web", MinSize=1, MaxSize=3, DesiredCapacity=1,
                                                 LaunchConfigurationName="lc-1", AvailabilityZones=["us-east-1a"])
    (first,) = wait_until(lambda: list(states(aws)), message="an instance")
    aws["autoscaling"].update_auto_scaling_group(AutoScalingGroupName="web", LaunchConfigurationName="lc-2",
                                                 DesiredCapacity=2)
    wait_until(lambda: list(states(aws).values()) == ["InService", "InService"], message="2 InService")
    described = aws["autoscaling"].describe_auto_scaling_instances()["AutoScalingInstances"]
    assert {i["InstanceId"]: i["LaunchConfigurationName"] for i in described}[first] == "lc-1"
    assert sorted(i["LaunchConfigurationName"] for i in described) == ["lc-1", "lc-2"]
    associations = aws["ec2"].describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"]
    assert {a["InstanceId"] for a in associations} == {i["InstanceId"] for i in described}


def test_updating_a_hook_keeps_what_the_update_omits(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    url, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn, timeout=120, default="CONTINUE")
    wait_until(lambda: receive(aws, url), message="TEST_NOTIFICATION")
    aws["autoscaling"].put_lifecycle_hook(AutoScalingGroupName="web", LifecycleHookName="provision",
                                          HeartbeatTimeout=240)
    (hook,) = aws["autoscaling"].describe_lifecycle_hooks(AutoScalingGroupName="web")["LifecycleHooks"]
    assert (hook["HeartbeatTimeout"], hook["DefaultResult"], hook["LifecycleTransition"]) == (240, "CONTINUE", LAUNCHING)
    assert hook["NotificationTargetARN"] == arn
    aws["autoscaling"].delete_lifecycle_hook(AutoScalingGroupName="web", LifecycleHookName="provision")
    assert aws["autoscaling"].describe_lifecycle_hooks(AutoScalingGroupName="web")["LifecycleHooks"] == []


def test_deleting_a_hook_abandons_its_waiting_launches(cloud: LocalCloud, aws: dict[str, Any]) -> None:
    _, arn = make_queue(aws)
    make_group(aws, desired=0)
    put_hook(aws, arn)
    with pytest.raises(ClientError) as raised:
        put_hook(aws, arn, name="too-short", timeout=5)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
    (first,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "Pending:Wait"], message="Pending:Wait")
    aws["autoscaling"].delete_lifecycle_hook(AutoScalingGroupName="web", LifecycleHookName="provision")
    (second,) = wait_until(lambda: [i for i, s in states(aws).items() if s == "InService"], message="a replacement")
    assert second != first and first not in states(aws)
