"""The provisioning loop with real daemons: a salt-master started from the documented master config (engine,
reactor, auth events), localcloud, and localcloud instances that are real salt-minions on their own loopback
addresses. No test completes a lifecycle action or accepts a key itself: the engine, the reactor and the
orchestrations do, and the tests watch AWS (localcloud), the ledger and the master's event bus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localcloud import LocalCloud
from localcloud.identity import IdentitySigner
from localcloud.salt_instance import SaltInstanceAgent
from localcloud.testing import client, wait_until
from phoenix.lifecycle.ledger import Ledger
from tests.integration import lifecycle_master as lm

pytestmark = pytest.mark.daemons
PROVISION_STEPS = ["claim", "minion", "highstate", "reboot", "health", "profile", "signal"]


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
    # on_auth_event_callback: salt-factories would otherwise run `salt-key --accept` for every pending key
    # it sees on the bus, which is exactly what must not happen here
    # key_timeout: the forgery test holds two instances' own minions back while forged keys are reviewed
    overrides = lm.master_overrides(cloud.endpoint, queue["url"], certificate, pillar,
                                    lifecycle={"key_timeout": 300})
    factory = salt_factories.salt_master_daemon(
        "lifecycle-master", overrides=overrides, on_auth_event_callback=lambda master, payload: None)
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
    action = lm.settled(ledger, iid)
    assert action.state == "continued", action
    assert iid in lm.accepted_keys(salt_master)
    accepted = lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/key/accepted/{iid}", start)
    lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start,
                  where=lambda e: e.data["step"] == "signal")
    steps = [e.data for e in lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start)]
    # part 2 (issue 11) adds reboot and profile before the signal, secrets and inventory after it
    assert [s["step"] for s in steps if s["result"]][:7] == PROVISION_STEPS, steps
    # the only possible failure: a repeated trigger whose claim found the action taken
    assert all(s["step"] == "claim" for s in steps if not s["result"]), steps
    assert accepted.data["instance_id"] == iid
    assert cloud.api_calls().get("autoscaling:CompleteLifecycleAction", 0) >= 1



def test_a_rebuild_cycle_of_three_provisions_the_new_and_retires_the_old(salt_master, aws, queue, ledger,
                                                                          event_listener, cloud, pillar):
    """rebuild.cycle (orch.rebuild, instance refresh) on a group of 3 whose every instance comes and goes
    through Salt: keys accepted by the engine, the web role (sample Flask app with the debugger on, behind
    its own NGINX and allowlist) applied, health-checked through that NGINX, CONTINUEd; the old instances'
    keys deleted and their minion caches flushed. The test completes no lifecycle action."""
    lm.set_mode(pillar, "webapp")
    lm.make_group(aws, "lc-fleet", queue["arn"], desired=3, terminating=True)
    old = set(lm.wait_in_service(aws, "lc-fleet", 3, timeout=300))
    assert old <= set(lm.accepted_keys(salt_master))
    start = time.time()
    pillar = {"group": "lc-fleet", "strategy": "instance_refresh", "force": True, "poll_initial": "0.5s",
              "poll_max": "2s", "deadline": "20m"}
    ret = salt_master.salt_run_cli(timeout=1500).run("state.orchestrate", "orch.rebuild",
                                                     f"pillar={json.dumps(pillar)}")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    finished = lm.wait_event(event_listener, salt_master.id, "phoenix/rebuild/lc-fleet/finished", start)
    assert finished.data["result"] is True and finished.data["replaced"] == 3, finished.data
    now = lm.instances(aws, "lc-fleet")
    assert len(now) == 3 and set(now.values()) == {"InService"} and not set(now) & old
    accepted = set(lm.accepted_keys(salt_master))
    cache = f"{salt_master.config['cachedir']}/minions"
    for iid in now:
        assert lm.settled(ledger, iid).state == "continued" and iid in accepted
        steps = [e.data["step"] for e in lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}",
                                                   start) if e.data["result"]]
        assert steps[:7] == PROVISION_STEPS, (iid, steps)
        health = lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start,
                               where=lambda e: e.data["step"] == "health")
        assert health.data["address"] == cloud.private_ip(iid)
        assert health.data["answers"] == {"/health": 200, "/console": 404,
                                          "/?__debugger__=yes&cmd=resource&f=style.css": 404}
        # the instance's own NGINX still serves it
        assert lm.http_get(f"http://{cloud.private_ip(iid)}:8080/health")
    for iid in old:  # the old instances terminate after the new ones are in service
        lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/retired/{iid}", start, timeout=120)
        assert lm.settled(ledger, iid, lm.TERMINATING).state == "continued"
        assert iid not in lm.accepted_keys(salt_master) and not os.path.exists(f"{cache}/{iid}")
    stop_group(aws, "lc-fleet")

def api(cloud, name: str) -> int:
    return cloud.api_calls().get(f"autoscaling:{name}", 0)


def first_instance(aws, group: str, timeout: float = 60) -> str:
    found = wait_until(lambda: lm.instances(aws, group), timeout=timeout, message=f"an instance in {group}")
    return sorted(found)[0]


def stop_group(aws, group: str) -> None:
    aws["autoscaling"].update_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, DesiredCapacity=0)


@pytest.mark.parametrize("mode, reason", [
    ("fail", "state lifecycle-test-fails (test.fail_without_changes) failed"),
    ("open", "/console answered 200, expected 404"),
])
def test_a_failing_state_or_health_check_abandons_at_once(salt_master, aws, queue, ledger, event_listener, cloud,
                                                          pillar, mode, reason):
    lm.set_mode(pillar, mode)
    group = f"lc-{mode}"
    start = time.time()
    lm.make_group(aws, group, queue["arn"], desired=1, terminating=False)
    iid = first_instance(aws, group)
    abandoned = lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/abandoned/{iid}", start)
    stop_group(aws, group)  # the group would launch replacements that fail the same way
    assert reason in abandoned.data["reason"], abandoned.data
    action = lm.settled(ledger, iid)
    assert action.state == "abandoned" and reason in action.reason
    # ABANDON came from Phoenix right after the failing step, not from the hook's timeout (300 s)
    assert action.completed_at - action.received_at < 120
    failed = [e.data for e in lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start)
              if e.data["result"] is False]
    assert [f["step"] for f in failed] == ["highstate" if mode == "fail" else "health"]
    assert iid not in lm.instances(aws, group)  # AWS terminated it; the group replaces it
    records = {r["instance_id"]: r for r in cloud.instances(group)}
    assert records[iid]["end_reason"] == "abandoned" and len(records) >= 2


def test_slow_provisioning_survives_past_the_heartbeat_timeout(salt_master, aws, queue, ledger, pillar, cloud):
    lm.set_mode(pillar, "slow", seconds=45)
    lm.make_group(aws, "lc-slow", queue["arn"], desired=1, heartbeat=30, terminating=False)
    iid = first_instance(aws, "lc-slow")
    lm.wait_in_service(aws, "lc-slow", 1, timeout=240)
    action = lm.settled(ledger, iid)
    assert action.state == "continued"
    assert action.completed_at - action.received_at > 30  # longer than HeartbeatTimeout...
    assert action.heartbeats >= 3  # ...alive through heartbeats at <= 10 s


def test_forgeries_accept_provision_and_signal_nothing(salt_master, aws, queue, ledger, event_listener, cloud,
                                                       agent, monkeypatch):
    # two instances of lc-forge-held boot without their own minion until the test lets them (forgeries 4
    # and 5 need an instance whose lifecycle action is in flight and whose key was never accepted)
    held: list[str] = []
    boot = agent.start

    def start(instance_id: str) -> None:
        if any(r["instance_id"] == instance_id for r in cloud.instances("lc-forge-held")):
            held.append(instance_id)
            return
        boot(instance_id)

    monkeypatch.setattr(agent, "start", start)
    lm.make_group(aws, "lc-forge", queue["arn"], desired=1, terminating=False)
    (victim,) = lm.wait_in_service(aws, "lc-forge", 1)
    lm.settled(ledger, victim)
    completions = api(cloud, "CompleteLifecycleAction")
    start = time.time()
    # 1. a minion fires the launching trigger for an instance that is not in flight (itself, and a made-up id)
    made_up = "i-00000000deadbeef0"
    for target in (victim, made_up):
        ret = salt_master.salt_cli(timeout=30).run("event.send", f"phoenix/lifecycle/launching/{target}",
                                                  minion_tgt=victim)
        assert ret.returncode == 0, ret.stderr
        ignored = lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/ignored/{target}", start)
        assert "no in-flight launching action" in ignored.data["reason"]
    # 2. a key with a made-up instance id, carrying a real (victim's) identity document
    # 3. a second key for an id already accepted
    imds = cloud.imds_url(victim)
    document = lm.http_get(f"{imds}/latest/dynamic/instance-identity/document")
    signature = lm.http_get(f"{imds}/latest/dynamic/instance-identity/signature")
    forgers = [lm.rogue_minion(agent, made_up, document, signature),
               lm.rogue_minion(agent, victim, document, signature, name="second-key")]
    try:
        refused = lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/key/refused/{made_up}", start)
        assert "no in-flight LAUNCHING" in refused.data["reason"]
        denied = lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/key/refused/{victim}", start)
        assert "Salt denied this key" in denied.data["reason"]
        assert made_up in lm.pending_keys(salt_master) and made_up not in lm.accepted_keys(salt_master)
    finally:
        stop_rogues(forgers)
    assert api(cloud, "CompleteLifecycleAction") == completions
    assert ledger.latest(victim).state == "continued" and ledger.latest(made_up) is None
    assert [n["kind"] for n in ledger.notes(made_up)] == ["ignored", "key_refused"]
    stop_group(aws, "lc-forge")

    # 4. a replayed identity document: the victim's (already used to accept its key), shown with another
    #    key for an instance that really waits for its key
    # 5. a document signed by another key: an in-flight instance's own document, signed by a key that is
    #    not the configured certificate's
    lm.make_group(aws, "lc-forge-held", queue["arn"], desired=2, terminating=False)
    wait_until(lambda: len(held) == 2 and all(ledger.in_flight(i) for i in held), timeout=120, interval=0.3,
               message="two held instances with an in-flight LAUNCHING action")
    replayed, resigned = held
    own = lm.http_get(f"{cloud.imds_url(resigned)}/latest/dynamic/instance-identity/document")
    other_signature = IdentitySigner("us-east-1", key_size=1024).sign(own.encode())
    completions = api(cloud, "CompleteLifecycleAction")
    start = time.time()
    forgers = [lm.rogue_minion(agent, replayed, document, signature, name="replay"),
               lm.rogue_minion(agent, resigned, own, other_signature, name="other-signer")]
    reasons = {replayed: "this identity document was already used to accept a key (replay)",
               resigned: "not signed by the configured certificate's key"}
    try:
        for iid, reason in reasons.items():
            lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/key/refused/{iid}", start,
                          timeout=120, where=lambda e, reason=reason: reason in e.data["reason"])
            assert iid in lm.pending_keys(salt_master) and iid not in lm.accepted_keys(salt_master)
            assert any(reason in n["detail"] for n in ledger.notes(iid, "key_refused")), ledger.notes(iid)
            assert not ledger.key_accepted_before(iid)
            assert ledger.in_flight(iid) is not None  # not ABANDONed, not CONTINUEd: still AWS's to decide
        assert set(lm.instances(aws, "lc-forge-held").values()) == {"Pending:Wait"}
        assert api(cloud, "CompleteLifecycleAction") == completions
        assert not lm.events(event_listener, salt_master.id, "phoenix/lifecycle/key/accepted/*", start)
    finally:
        stop_rogues(forgers)
    # the forgers' pending keys go (what an operator does); the instances' own minions then get in
    for iid in held:
        ret = salt_master.salt_key_cli(timeout=60).run("--delete", iid, "--yes")
        assert ret.returncode == 0, ret.stderr
        boot(iid)
    lm.wait_in_service(aws, "lc-forge-held", 2, timeout=300)
    assert all(lm.settled(ledger, iid).state == "continued" for iid in held)
    assert api(cloud, "CompleteLifecycleAction") == completions + 2
    stop_group(aws, "lc-forge-held")


def stop_rogues(forgers) -> None:
    for proc in forgers:
        os.killpg(proc.pid, signal.SIGKILL)  # the minion and the processes it forked
        proc.wait(10)
        shutil.rmtree(proc.sock_dir, ignore_errors=True)


def test_a_master_restart_mid_provisioning_completes_once(salt_master, aws, queue, ledger, event_listener, cloud,
                                                          pillar):
    lm.set_mode(pillar, "slow", seconds=20)
    start = time.time()
    lm.make_group(aws, "lc-restart", queue["arn"], desired=1, terminating=False)
    iid = first_instance(aws, "lc-restart")
    lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start,
                  where=lambda e: e.data["step"] == "minion")
    action = ledger.in_flight(iid)
    # SQS delivers at least once: a copy of the notification arrives too
    aws["sqs"].send_message(QueueUrl=queue["url"], MessageBody=json.dumps({
        "LifecycleHookName": action.hook, "AccountId": "123456789012", "RequestId": "copy",
        "LifecycleTransition": action.transition, "AutoScalingGroupName": action.group,
        "Service": "AWS Auto Scaling", "Time": "2026-12-01T00:00:00Z", "EC2InstanceId": iid,
        "LifecycleActionToken": action.token}))
    salt_master.terminate()  # the orchestration dies with the master, mid-highstate
    before = api(cloud, "CompleteLifecycleAction")
    salt_master.start(start_timeout=120)
    lm.wait_in_service(aws, "lc-restart", 1, timeout=240)
    assert "resumed" in [n["kind"] for n in ledger.notes(iid)]
    assert lm.settled(ledger, iid).state == "continued" and len(ledger.actions(instance_id=iid)) == 1
    time.sleep(3)
    assert api(cloud, "CompleteLifecycleAction") == before + 1


def test_an_abandoned_launch_in_a_cycle_is_in_its_summary(salt_master, aws, queue, ledger, event_listener, pillar):
    """orch.rebuild on a provisioned group whose new instances fail their highstate: Phoenix ABANDONs the
    first new instance at once, the refresh stops (AWS fails it; otherwise the first batch's abandon budget
    of 0 cancels it), and the cycle's summary (its failed event and the orchestration's return) names the
    abandoned instance."""
    group = "lc-abandon"
    lm.make_group(aws, group, queue["arn"], desired=2, terminating=True)
    old = set(lm.wait_in_service(aws, group, 2, timeout=300))
    for iid in old:
        assert lm.settled(ledger, iid).state == "continued"
    lm.set_mode(pillar, "fail")  # only what is launched from now on applies it
    start = time.time()
    cycle = {"group": group, "strategy": "instance_refresh", "force": True, "poll_initial": "0.5s",
             "poll_max": "2s", "deadline": "15m"}
    ret = salt_master.salt_run_cli(timeout=900).run("state.orchestrate", "orch.rebuild",
                                                    f"pillar={json.dumps(cycle)}")
    lm.set_mode(pillar, "ok")  # the group's replacements may provision again
    assert ret.returncode != 0, ret.stdout  # a failed cycle fails the orchestration
    failed = lm.wait_event(event_listener, salt_master.id, f"phoenix/rebuild/{group}/failed", start, timeout=60)
    summary = failed.data
    assert summary["result"] is False and summary["abandoned"] >= 1, summary
    assert not lm.events(event_listener, salt_master.id, f"phoenix/rebuild/{group}/finished", start)
    assert "abandoned" in ret.stdout  # the human-readable return says so too
    for iid in summary["abandoned_instances"]:
        assert iid not in old
        action = lm.settled(ledger, iid)
        assert action.state == "abandoned" and "lifecycle-test-fails" in action.reason, action
        assert action.completed_at - action.received_at < 120  # Phoenix's ABANDON, not the hook's timeout
    stop_group(aws, group)
