"""Key review (phoenix.lifecycle.keys.review) with a real ledger file and really signed identity documents
(localcloud's signer, verified by phoenix.lifecycle.identity.verify); AWS's answer and Salt's pending key
are plain functions here. Every forgery case must be refused with a reason that names it, and nothing may
be recorded as accepted."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from localcloud.identity import IdentitySigner
from phoenix.lifecycle import keys, messages
from phoenix.lifecycle.identity import verify
from phoenix.lifecycle.ledger import LAUNCHING, TERMINATING, Ledger

IID = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"
NOW = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.timezone.utc)
PUB = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq...minion\n-----END PUBLIC KEY-----"


@pytest.fixture(scope="module")
def signer():
    return IdentitySigner("us-east-1", key_size=1024)


def document(signer, instance_id=IID, minutes_ago=1):
    issued = signer.issue(instance_id=instance_id, account_id="123456789012", availability_zone="us-east-1a",
                          image_id="ami-12c6146b", instance_type="t3.micro",
                          pending_time=(NOW - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          private_ip="127.1.0.5")
    return {keys.DOCUMENT_GRAIN: issued.document.decode(), keys.SIGNATURE_GRAIN: issued.signature}


@pytest.fixture
def ledger(tmp_path):
    book = Ledger(tmp_path / "ledger.sqlite")
    for iid in (IID, OTHER):
        book.record(str(uuid.uuid4()), iid, "lc-web", "provision", LAUNCHING, heartbeat_timeout=300,
                    global_deadline=NOW.timestamp() + 30000)
    return book


def review(signer, ledger, event, state=("Pending:Wait", "lc-web"), pending=PUB, certificate=None):
    return keys.review(event, ledger=ledger, instance_state=lambda i: state, verify=verify,
                       certificate_pem=certificate or signer.certificate_pem, now=lambda: NOW, max_age_seconds=900,
                       pending_pub=lambda i: pending, managed=lambda g: messages.managed(g, ["lc-*"]))


def pend(grains, instance_id=IID, pub=PUB, act="pend"):
    return {"id": instance_id, "act": act, "pub": pub, "result": True, "autosign_grains": grains}


def test_a_verified_instance_is_accepted_once(signer, ledger):
    event = pend(document(signer))
    decision = review(signer, ledger, event)
    assert decision.accept, decision.reason
    assert ledger.key_accepted_before(IID)
    again = review(signer, ledger, event)
    assert not again.accept and "already accepted" in again.reason


@pytest.mark.parametrize("case, expected", [
    ("made-up id", "no in-flight LAUNCHING"),
    ("not an instance id", "not an EC2 instance id"),
    ("no grains", "no identity document"),
    ("other instance's document", "names 'i-0fedcba9876543210'"),
    ("another key signed it", "not signed by the configured certificate"),
    ("altered document", "not signed by the configured certificate"),
    ("too old", "s ago"),
    ("not Pending:Wait", "InService, not Pending:Wait"),
    ("unmanaged group", "not the managed group"),
    ("other pending key", "the pending key is not the key"),
    ("nothing pending", "no key of this id is pending"),
    ("salt denied it", "Salt denied this key"),
])
def test_forgeries_are_refused_and_nothing_is_recorded(signer, ledger, case, expected):
    grains = document(signer)
    kwargs = {}
    if case == "made-up id":
        event = pend(document(signer, "i-00000000deadbeef0"), instance_id="i-00000000deadbeef0")
    elif case == "not an instance id":
        event = pend(grains, instance_id="web-1")
    elif case == "no grains":
        event = pend({})
    elif case == "other instance's document":
        event = pend(document(signer, OTHER))
    elif case == "another key signed it":
        event = pend(document(IdentitySigner("us-east-1", key_size=1024)))
    elif case == "altered document":
        grains[keys.DOCUMENT_GRAIN] = grains[keys.DOCUMENT_GRAIN].replace("t3.micro", "t3.large")
        event = pend(grains)
    elif case == "too old":
        event = pend(document(signer, minutes_ago=60))
    elif case == "not Pending:Wait":
        event, kwargs = pend(grains), {"state": ("InService", "lc-web")}
    elif case == "unmanaged group":
        event, kwargs = pend(grains), {"state": ("Pending:Wait", "db")}
    elif case == "other pending key":
        event, kwargs = pend(grains), {"pending": PUB.replace("minion", "attacker")}
    elif case == "nothing pending":
        event, kwargs = pend(grains), {"pending": None}
    else:
        event = pend(grains, act="denied")
    decision = review(signer, ledger, event, **kwargs)
    assert not decision.accept and expected in decision.reason, decision.reason
    assert not ledger.key_accepted_before(IID)


def test_a_document_is_used_once_even_for_a_new_action(signer, ledger):
    grains = document(signer)
    assert review(signer, ledger, pend(grains)).accept
    # the same document shown for the other in-flight instance: its id does not match, and it is used
    replay = review(signer, ledger, pend(grains, instance_id=OTHER))
    assert not replay.accept and "already used" in replay.reason


def test_a_terminating_action_does_not_allow_a_key(signer, tmp_path):
    book = Ledger(tmp_path / "t.sqlite")
    book.record(str(uuid.uuid4()), IID, "lc-web", "retire", TERMINATING, heartbeat_timeout=300,
                global_deadline=NOW.timestamp() + 30000)
    decision = review(signer, book, pend(document(signer)))
    assert not decision.accept and "no in-flight LAUNCHING" in decision.reason


def test_messages_are_validated_before_use():
    good = {"LifecycleHookName": "provision", "LifecycleTransition": LAUNCHING, "AutoScalingGroupName": "lc-web",
            "EC2InstanceId": IID, "LifecycleActionToken": str(uuid.uuid4()), "Time": "2026-12-01T10:00:00.000Z",
            "AccountId": "123456789012"}
    import json

    parsed = messages.parse(json.dumps(good), ["lc-*"])
    assert isinstance(parsed, messages.Notification) and parsed.time == NOW.timestamp()
    assert messages.parse(json.dumps({"Event": "autoscaling:TEST_NOTIFICATION"})) is messages.TEST
    for key, value, reason in [("EC2InstanceId", f"{IID}\n", "not an instance id"),
                               ("AutoScalingGroupName", "lc-web/../x", "characters"),
                               ("LifecycleTransition", "autoscaling:EC2_INSTANCE_EXPLODING", "unknown"),
                               ("LifecycleActionToken", "x", "not a UUID"),
                               ("AccountId", "12", "not an account id")]:
        bad = messages.parse(json.dumps({**good, key: value}), ["lc-*"])
        assert isinstance(bad, messages.Malformed) and reason in bad.reason, (key, bad)
    other = messages.parse(json.dumps(good), ["lc-*"], account="210987654321")
    assert isinstance(other, messages.Malformed) and "configured account" in other.reason
