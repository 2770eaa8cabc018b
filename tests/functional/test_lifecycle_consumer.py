"""The queue consumer, heartbeats and completions against localcloud (real SQS and Auto Scaling lifecycle,
no Salt daemons): validation, dedupe on the token, ledger before delete, heartbeats at a third of the
timeout, "No active Lifecycle Action found" as final, the global timeout, resume, exactly-once completion."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from localcloud import LocalCloud
from localcloud.testing import client, wait_until
from phoenix.aws import AWS, settings_from
from phoenix.lifecycle import signal
from phoenix.lifecycle.consumer import RESUME_DELAY, Consumer
from phoenix.lifecycle.ledger import LAUNCHING, Ledger, LedgerError
from phoenix.lifecycle.options import options_from

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDS.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(boot_seconds=0.1) as running:
        yield running


@pytest.fixture
def env(cloud, tmp_path):
    cloud.reset()
    sqs = client(cloud.endpoint, "sqs")
    asg = client(cloud.endpoint, "autoscaling")
    ec2 = client(cloud.endpoint, "ec2")
    url = sqs.create_queue(QueueName="lc", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ec2.create_launch_template(LaunchTemplateName="lc-lt", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    asg.create_auto_scaling_group(AutoScalingGroupName="lc-web", MinSize=0, MaxSize=4, DesiredCapacity=0,
                                  LaunchTemplate={"LaunchTemplateName": "lc-lt", "Version": "$Latest"},
                                  AvailabilityZones=["us-east-1a"])
    asg.put_lifecycle_hook(AutoScalingGroupName="lc-web", LifecycleHookName="provision",
                           LifecycleTransition=LAUNCHING, NotificationTargetARN=arn,
                           RoleARN="arn:aws:iam::123456789012:role/hooks", HeartbeatTimeout=30,
                           DefaultResult="ABANDON")
    options = options_from({"queue_url": url, "groups": ["lc-*"], "wait_seconds": 0, "visibility_timeout": 1,
                            "ledger": str(tmp_path / "ledger.sqlite")})
    aws = AWS(settings_from({"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 1}))
    events: list[tuple[str, dict[str, Any]]] = []
    clock = {"now": None}

    def now() -> float:
        return clock["now"] if clock["now"] is not None else cloud.clock.now()

    ledger = Ledger(options.ledger)
    consumer = Consumer(aws, ledger, options, lambda tag, data: events.append((tag, data)), clock=now)
    return {"sqs": sqs, "asg": asg, "url": url, "arn": arn, "aws": aws, "ledger": ledger, "consumer": consumer,
            "events": events, "clock": clock, "cloud": cloud, "options": options}


def launch(env) -> str:
    env["asg"].set_desired_capacity(AutoScalingGroupName="lc-web", DesiredCapacity=1)
    # the hook's test notification, then the instance's lifecycle notification
    wait_until(lambda: env["consumer"].poll_once() and env["ledger"].actions(), timeout=20,
               message="a recorded action")
    (action,) = env["ledger"].actions()
    return action.instance_id


def queue_depth(env) -> int:
    attrs = env["sqs"].get_queue_attributes(QueueUrl=env["url"], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_a_notification_is_recorded_then_deleted_then_triggered(env):
    iid = launch(env)
    action = env["ledger"].in_flight(iid)
    assert action.group == "lc-web" and action.hook == "provision" and action.heartbeat_timeout == 30
    assert action.global_deadline - action.last_heartbeat == pytest.approx(3000, abs=2)  # 100 x heartbeat
    tags = [t for t, _ in env["events"]]
    assert f"phoenix/lifecycle/launching/{iid}" in tags and f"phoenix/lifecycle/recorded/{iid}" in tags
    assert queue_depth(env) == 0  # the test notification and the action's message are both deleted


def test_a_redelivered_notification_is_dropped(env):
    iid = launch(env)
    action = env["ledger"].in_flight(iid)
    body = {"LifecycleHookName": "provision", "AccountId": "123456789012", "RequestId": str(uuid.uuid4()),
            "LifecycleTransition": LAUNCHING, "AutoScalingGroupName": "lc-web", "Service": "AWS Auto Scaling",
            "Time": "2026-12-01T10:00:00.000Z", "EC2InstanceId": iid, "LifecycleActionToken": action.token}
    env["sqs"].send_message(QueueUrl=env["url"], MessageBody=json.dumps(body))
    env["events"].clear()
    wait_until(lambda: env["consumer"].poll_once(), timeout=10, message="the duplicate")
    assert [t for t, _ in env["events"]] == [f"phoenix/lifecycle/duplicate/{iid}"]
    assert len(env["ledger"].actions()) == 1 and queue_depth(env) == 0


@pytest.mark.parametrize("body, reason", [
    ("not json", "not JSON"),
    (json.dumps({"LifecycleTransition": LAUNCHING}), "missing"),
    (json.dumps({"LifecycleHookName": "provision", "LifecycleTransition": LAUNCHING, "AutoScalingGroupName": "lc-web",
                 "EC2InstanceId": "i-../../etc", "LifecycleActionToken": str(uuid.uuid4())}), "not an instance id"),
    (json.dumps({"LifecycleHookName": "provision", "LifecycleTransition": LAUNCHING, "AutoScalingGroupName": "other",
                 "EC2InstanceId": "i-0123456789abcdef0", "LifecycleActionToken": str(uuid.uuid4())}), "not managed"),
    (json.dumps({"LifecycleHookName": "nohook", "LifecycleTransition": LAUNCHING, "AutoScalingGroupName": "lc-web",
                 "EC2InstanceId": "i-0123456789abcdef0", "LifecycleActionToken": str(uuid.uuid4())}), "no lifecycle hook"),
])
def test_a_malformed_message_is_logged_once_and_left_for_the_redrive_policy(env, body, reason, caplog):
    env["sqs"].send_message(QueueUrl=env["url"], MessageBody=body)
    wait_until(lambda: env["consumer"].poll_once(), timeout=10, message="the message")
    wait_until(lambda: env["consumer"].poll_once(), timeout=10, message="the redelivery")
    malformed = [d for t, d in env["events"] if t == "phoenix/lifecycle/malformed"]
    assert len(malformed) == 1 and reason in malformed[0]["reason"], malformed
    assert env["ledger"].actions() == [] and queue_depth(env) == 1
    assert sum("left on the queue" in r.message or "kept on the queue" in r.message for r in caplog.records) == 1


def test_the_message_stays_when_the_ledger_cannot_write(env, monkeypatch):
    def broken(*args, **kwargs):
        raise LedgerError("disk full")

    monkeypatch.setattr(env["ledger"], "record", broken)
    env["asg"].set_desired_capacity(AutoScalingGroupName="lc-web", DesiredCapacity=1)
    with pytest.raises(LedgerError):
        wait_until(lambda: env["consumer"].poll_once() and False, timeout=20)
    assert queue_depth(env) == 1 and not any(t.startswith("phoenix/lifecycle/launching") for t, _ in env["events"])


def test_heartbeats_at_a_third_of_the_timeout_until_gone(env):
    iid = launch(env)
    action = env["ledger"].in_flight(iid)
    env["ledger"].claim(action.token, "orch-test")  # an orchestration works on it (no re-trigger)
    env["clock"]["now"] = action.last_heartbeat + 9  # before timeout/3: nothing due
    assert env["consumer"].heartbeat_once() == []
    env["clock"]["now"] = action.last_heartbeat + 10.5
    assert env["consumer"].heartbeat_once() == [(iid, "heartbeat")]
    assert env["ledger"].get(action.token).heartbeats == 1
    calls = env["cloud"].api_calls()
    assert calls["autoscaling:RecordLifecycleActionHeartbeat"] == 1
    # AWS ends the action on its own (someone completed it): the next heartbeat learns it, once, for good
    env["asg"].complete_lifecycle_action(AutoScalingGroupName="lc-web", LifecycleHookName="provision",
                                         InstanceId=iid, LifecycleActionResult="CONTINUE")
    env["clock"]["now"] += 11
    assert env["consumer"].heartbeat_once() == [(iid, "gone")]
    env["clock"]["now"] += 11
    assert env["consumer"].heartbeat_once() == []
    assert env["cloud"].api_calls()["autoscaling:RecordLifecycleActionHeartbeat"] == 2
    assert env["ledger"].get(action.token).state == "gone"


def test_heartbeats_stop_at_the_global_timeout(env):
    iid = launch(env)
    action = env["ledger"].in_flight(iid)
    env["clock"]["now"] = action.global_deadline + 1
    assert env["consumer"].heartbeat_once() == [(iid, "expired")]
    assert env["ledger"].get(action.token).state == "expired"
    assert "autoscaling:RecordLifecycleActionHeartbeat" not in env["cloud"].api_calls()


def test_resume_triggers_what_is_in_flight_and_completion_happens_once(env):
    iid = launch(env)
    env["ledger"].claim(env["ledger"].in_flight(iid).token, "orch-before-restart")
    env["events"].clear()
    again = Consumer(env["aws"], env["ledger"], env["options"], lambda t, d: env["events"].append((t, d)),
                     clock=lambda: env["clock"]["now"])
    env["clock"]["now"] = env["cloud"].clock.now()
    assert again.resume() == [iid]
    assert [t for t, _ in env["events"]] == [f"phoenix/lifecycle/resumed/{iid}"]
    assert env["ledger"].in_flight(iid).claimed_by is None  # the old orchestration died with the master
    env["clock"]["now"] += RESUME_DELAY - 0.5
    assert again.heartbeat_once() == []  # not at once: the reactor may not listen yet
    env["clock"]["now"] += 1.0  # the trigger follows RESUME_DELAY later, once the reactor listens too
    assert (iid, "retriggered") in again.heartbeat_once()
    assert f"phoenix/lifecycle/launching/{iid}" in [t for t, _ in env["events"]]
    assert again.heartbeat_once() == []  # and not again while the next orchestration has its chance
    emit = lambda t, d: env["events"].append((t, d))  # noqa: E731
    first = signal.complete(env["aws"], env["ledger"], iid, LAUNCHING, "CONTINUE", None, emit)
    second = signal.complete(env["aws"], env["ledger"], iid, LAUNCHING, "CONTINUE", None, emit)
    assert first["sent"] is True and first["state"] == "continued"
    assert second["sent"] is False and "no in-flight action" in second["reason"]
    assert env["cloud"].api_calls()["autoscaling:CompleteLifecycleAction"] == 1
    wait_until(lambda: env["asg"].describe_auto_scaling_instances(InstanceIds=[iid])["AutoScalingInstances"][0]
               ["LifecycleState"] == "InService", timeout=10, message="InService")
