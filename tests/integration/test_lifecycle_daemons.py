"""The provisioning loop with real daemons: a salt-master started from the documented master config (engine,
reactor, auth events), localcloud, and localcloud instances that are real salt-minions on their own loopback
addresses. No test completes a lifecycle action or accepts a key itself: the engine, the reactor and the
orchestrations do, and the tests watch AWS (localcloud), the ledger and the master's event bus."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localcloud import LocalCloud
from localcloud.salt_instance import SaltInstanceAgent
from localcloud.testing import client, wait_until
from phoenix.lifecycle.ledger import Ledger
from tests.integration import lifecycle_master as lm

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lm.CREDS.items():  # the daemons inherit the environment: dummy credentials
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> SaltInstanceAgent:
    # the master's ports are set once its factory exists (the master needs the cloud's endpoint first)
    return SaltInstanceAgent(tmp_path_factory.mktemp("instances"), master_port=0, publish_port=0)


@pytest.fixture(scope="module")
def cloud(agent) -> Iterator[LocalCloud]:
    with LocalCloud(boot_seconds=0.5, agent=agent) as running:
        yield running
    assert agent.pids() == {}, "an instance left processes behind"


@pytest.fixture(scope="module")
def aws(cloud) -> dict[str, Any]:
    return {name: client(cloud.endpoint, name) for name in ("autoscaling", "ec2", "sqs")}


@pytest.fixture(scope="module")
def queue(aws) -> dict[str, str]:
    url = aws["sqs"].create_queue(QueueName="lifecycle", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"url": url, "arn": arn}


@pytest.fixture(scope="module")
def pillar(tmp_path_factory):
    return lm.pillar_root(tmp_path_factory.mktemp("lifecycle"))


@pytest.fixture(scope="module")
def salt_master(salt_factories, cloud, queue, agent, pillar, tmp_path_factory):
    certificate = tmp_path_factory.mktemp("identity") / "localcloud-identity.pem"
    certificate.write_text(cloud.identity_certificate_pem)
    factory = salt_factories.salt_master_daemon(
        "lifecycle-master", overrides=lm.master_overrides(cloud.endpoint, queue["url"], certificate, pillar))
    factory.environ.update(lm.CREDS)  # the session's factories copied the environment before aws_env ran
    agent.master_port = factory.config["ret_port"]
    agent.publish_port = factory.config["publish_port"]
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture
def ledger(salt_master) -> Ledger:
    return Ledger(f"{salt_master.config['cachedir']}/phoenix/lifecycle.sqlite")


@pytest.fixture(autouse=True)
def mode_ok(pillar):
    lm.set_mode(pillar, "ok")
    yield
    lm.set_mode(pillar, "ok")


def test_one_instance_is_provisioned_and_continued(salt_master, aws, queue, ledger, event_listener, cloud):
    start = time.time()
    lm.make_group(aws, "lc-one", queue["arn"], desired=1)
    ready = lm.wait_in_service(aws, "lc-one", 1)
    (iid,) = ready
    action = ledger.latest(iid)
    assert action.state == "continued", action
    assert iid in lm.accepted_keys(salt_master)
    accepted = lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/key/accepted/{iid}", start)
    steps = [e.data for e in lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start)]
    assert [s["step"] for s in steps] == ["claim", "minion", "highstate", "health", "signal"], steps
    assert all(s["result"] for s in steps)
    assert accepted.data["instance_id"] == iid
    assert cloud.api_calls().get("autoscaling:CompleteLifecycleAction", 0) >= 1
