"""Lifecycle notifications as Auto Scaling sends them to SQS: parse and validate, never trust.

:func:`parse` classifies one SQS message body:

* a :class:`Notification` for a valid ``EC2_INSTANCE_LAUNCHING`` / ``_TERMINATING`` action;
* :data:`TEST` for ``autoscaling:TEST_NOTIFICATION`` (sent when a hook is created: ignored and deleted);
* :class:`Malformed` with the reason, for anything else (left on the queue for its redrive policy).

Ids are checked against AWS's formats before anything uses them, because they end up in event tags, file
names and Salt targets.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from phoenix.lifecycle.ledger import LAUNCHING, TERMINATING

TEST_EVENT = "autoscaling:TEST_NOTIFICATION"
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
TOKEN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Auto Scaling group and hook names: 1-255 characters, no control characters; we also refuse the characters
# that would change the meaning of an event tag or a Salt target.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,254}")
ACCOUNT = re.compile(r"[0-9]{12}")
TRANSITIONS = {LAUNCHING: "launching", TERMINATING: "terminating"}


def valid_instance_id(value: Any) -> bool:
    """``True`` for an EC2 instance id (``i-`` and 8 or 17 lowercase hex digits)."""
    return isinstance(value, str) and INSTANCE_ID.fullmatch(value) is not None


def require_instance_id(value: Any) -> str:
    """``value`` if it is an instance id, else ``ValueError`` naming it."""
    if not valid_instance_id(value):
        raise ValueError(f"not an EC2 instance id: {value!r} (expected i- and 8 to 17 lowercase hex digits)")
    return value


def kind_of(transition: str) -> str:
    """``launching`` / ``terminating`` for a lifecycle transition; ``ValueError`` otherwise."""
    try:
        return TRANSITIONS[transition]
    except KeyError:
        raise ValueError(f"unknown lifecycle transition {transition!r}: expected one of "
                         f"{', '.join(TRANSITIONS)}") from None


def transition_of(kind: str) -> str:
    """``autoscaling:EC2_INSTANCE_LAUNCHING`` for ``launching`` (or the full name itself)."""
    for transition, word in TRANSITIONS.items():
        if kind in (word, transition):
            return transition
    raise ValueError(f"unknown lifecycle transition {kind!r}: use launching or terminating")


@dataclass(frozen=True)
class Notification:
    """A valid lifecycle action notification."""

    token: str
    instance_id: str
    group: str
    hook: str
    transition: str
    time: float | None
    account: str | None
    metadata: str | None

    @property
    def kind(self) -> str:
        return TRANSITIONS[self.transition]


@dataclass(frozen=True)
class Malformed:
    """A message that is not a lifecycle notification we can use, and why."""

    reason: str


class _Test:
    def __repr__(self) -> str:
        return "TEST"


TEST = _Test()


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def managed(group: str, patterns: Iterable[str]) -> bool:
    """Whether ``group`` matches one of the configured group names or shell patterns (``web-*``)."""
    return any(fnmatch.fnmatchcase(group, p) for p in patterns)


def parse(body: str, groups: Iterable[str] = ("*",), account: str | None = None) -> Notification | Malformed | _Test:
    """Classify one SQS message body (see the module docstring)."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        return Malformed(f"not JSON: {exc}")
    if not isinstance(data, dict):
        return Malformed(f"not a JSON object but {type(data).__name__}")
    if data.get("Event") == TEST_EVENT:
        return TEST
    if "Message" in data and "TopicArn" in data:
        return Malformed("an SNS envelope: point the lifecycle hook at the SQS queue directly (or enable raw "
                         "message delivery)")
    missing = [k for k in ("LifecycleActionToken", "EC2InstanceId", "AutoScalingGroupName", "LifecycleHookName",
                           "LifecycleTransition") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        return Malformed(f"missing or empty field(s): {', '.join(missing)}")
    transition = data["LifecycleTransition"]
    if transition not in TRANSITIONS:
        return Malformed(f"unknown LifecycleTransition {transition!r}")
    if not valid_instance_id(data["EC2InstanceId"]):
        return Malformed(f"EC2InstanceId {data['EC2InstanceId']!r} is not an instance id")
    if not TOKEN.fullmatch(data["LifecycleActionToken"]):
        return Malformed(f"LifecycleActionToken {data['LifecycleActionToken']!r} is not a UUID")
    for key in ("AutoScalingGroupName", "LifecycleHookName"):
        if not NAME.fullmatch(data[key]):
            return Malformed(f"{key} {data[key]!r} has characters Phoenix does not accept")
    if not managed(data["AutoScalingGroupName"], groups):
        return Malformed(f"group {data['AutoScalingGroupName']!r} is not managed by Phoenix (phoenix:lifecycle:groups)")
    acct = data.get("AccountId")
    if acct is not None and not (isinstance(acct, str) and ACCOUNT.fullmatch(acct)):
        return Malformed(f"AccountId {acct!r} is not an account id")
    if account and acct != account:
        return Malformed(f"AccountId {acct!r} is not the configured account {account}")
    metadata = data.get("NotificationMetadata")
    return Notification(token=data["LifecycleActionToken"], instance_id=data["EC2InstanceId"],
                        group=data["AutoScalingGroupName"], hook=data["LifecycleHookName"], transition=transition,
                        time=_parse_time(data.get("Time")), account=acct,
                        metadata=metadata if isinstance(metadata, str) else None)


__all__ = ["parse", "Notification", "Malformed", "TEST", "TEST_EVENT", "valid_instance_id", "require_instance_id",
           "managed", "kind_of", "transition_of"]
