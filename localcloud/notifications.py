"""Lifecycle notifications in AWS's message format, delivered to the hook's SQS queue."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from localcloud import motoaccess

log = logging.getLogger(__name__)

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TEST = "autoscaling:TEST_NOTIFICATION"


def lifecycle_message(hook: Any, group_name: str, instance_id: str, token: str, when: str) -> dict[str, Any]:
    """The JSON body AWS sends for a lifecycle action."""
    message: dict[str, Any] = {
        "Origin": "EC2" if hook.lifecycle_transition == LAUNCHING else "AutoScalingGroup",
        "Destination": "AutoScalingGroup" if hook.lifecycle_transition == LAUNCHING else "EC2",
        "LifecycleHookName": hook.name,
        "AccountId": motoaccess.ACCOUNT_ID,
        "RequestId": str(uuid.uuid4()),
        "LifecycleTransition": hook.lifecycle_transition,
        "AutoScalingGroupName": group_name,
        "Service": "AWS Auto Scaling",
        "Time": when,
        "EC2InstanceId": instance_id,
        "LifecycleActionToken": token,
    }
    metadata = getattr(hook, "notification_metadata", None)
    if metadata:
        message["NotificationMetadata"] = metadata
    return message


def test_message(group: Any, when: str) -> dict[str, Any]:
    """The JSON body of ``autoscaling:TEST_NOTIFICATION`` sent when a hook is created."""
    return {
        "AccountId": motoaccess.ACCOUNT_ID,
        "RequestId": str(uuid.uuid4()),
        "AutoScalingGroupARN": group.arn,
        "AutoScalingGroupName": group.name,
        "Service": "AWS Auto Scaling",
        "Event": TEST,
        "Time": when,
    }


def deliver(target_arn: str | None, message: dict[str, Any]) -> bool:
    """Send ``message`` to an SQS queue ARN; False (and a log line) when it cannot be delivered."""
    if not target_arn or not target_arn.startswith("arn:aws:sqs:"):
        if target_arn:
            log.warning("localcloud delivers lifecycle notifications only to SQS, not %s", target_arn)
        return False
    parts = target_arn.split(":")
    region, queue_name = parts[3], parts[5]
    try:
        motoaccess.sqs(region).send_message(queue_name, json.dumps(message))
    except Exception as exc:  # the queue may have been deleted: AWS drops the notification too
        log.warning("lifecycle notification to %s not delivered: %s", target_arn, exc)
        return False
    return True
