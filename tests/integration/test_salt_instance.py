"""localcloud instances as real Salt minions (localcloud.salt_instance.SaltInstanceAgent) against a real
salt-master: each instance's minion has the instance id as its id, talks from the instance's own loopback
address, sends its identity document as autosign_grains, waits in `pending` until the master accepts its
key, answers once accepted, survives a reboot and leaves no process behind when the instance ends."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import LocalCloud
from localcloud.salt_instance import SaltInstanceAgent
from localcloud.testing import client, wait_until
from phoenix.lifecycle.identity import verify
from tests.integration.test_localcloud import make_group

pytestmark = pytest.mark.daemons

REPO = Path(__file__).resolve().parents[2]
ROOTS = REPO / "tests" / "integration" / "instance_roots"


@pytest.fixture(scope="module")
def salt_master(salt_factories):
    """A master that accepts nothing by itself (no auto_accept): the tests accept keys with salt-key."""
    factory = salt_factories.salt_master_daemon("instances-master", overrides={
        "interface": "127.0.0.1", "auto_accept": False,
        "file_roots": {"base": [str(REPO / "salt"), str(ROOTS / "salt")]},
        "pillar_roots": {"base": [str(ROOTS / "pillar")]},
        "auth_events_autosign_grains": ["pend"],
    })
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="module")
def agent(salt_master, tmp_path_factory) -> SaltInstanceAgent:
    return SaltInstanceAgent(tmp_path_factory.mktemp("instances"), master_port=salt_master.config["ret_port"],
                             publish_port=salt_master.config["publish_port"])


@pytest.fixture(scope="module")
def cloud(agent) -> Iterator[LocalCloud]:
    with LocalCloud(boot_seconds=0.1, agent=agent) as running:
        yield running
    assert agent.pids() == {}, "an instance left processes behind"


@pytest.fixture(scope="module")
def aws(cloud) -> dict[str, Any]:
    return {name: client(cloud.endpoint, name) for name in ("autoscaling", "ec2")}


def launch(aws: dict[str, Any], agent: SaltInstanceAgent, group: str) -> str:
    make_group(aws, group, desired=1)
    found = wait_until(lambda: aws["autoscaling"].describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"], message=f"an instance in {group}")
    iid = found[0]["InstanceId"]
    wait_until(lambda: iid in agent.running(), message=f"the agent to boot {iid}")
    return iid


def accept(salt_master, iid: str, timeout: float = 90) -> None:
    """The key must first show up as pending (nothing pre-accepted it), then the test accepts it."""
    pending = Path(salt_master.config["pki_dir"]) / "minions_pre" / iid
    wait_until(pending.exists, timeout=timeout, interval=0.1, message=f"{iid}'s key pending")
    assert not (Path(salt_master.config["pki_dir"]) / "minions" / iid).exists()
    ret = salt_master.salt_key_cli().run("--accept", iid, "--yes")
    assert ret.returncode == 0, ret.stderr


def started(event_listener, salt_master, iid: str, after: float, timeout: float = 90) -> None:
    """Wait for the minion's start event: it is connected and ready for jobs."""
    wait_until(lambda: event_listener.get_events([(salt_master.id, f"salt/minion/{iid}/start")], after_time=after),
               timeout=timeout, interval=0.2, message=f"{iid}'s minion start event")


def ping(salt_master, iid: str) -> dict[str, Any]:
    cli = salt_master.salt_cli(timeout=30)
    ret = cli.run("test.ping", minion_tgt=iid)
    assert ret.returncode == 0 and ret.data is True, ret.stdout + ret.stderr
    return cli.run("grains.item", "id", "phoenix_private_ip", "phoenix_identity_document",
                   "phoenix_identity_signature", minion_tgt=iid).data


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def connections_from(address: str, port: int) -> list[str]:
    out = subprocess.run(["ss", "-Htn", "state", "established", "src", address, "dst", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_an_instance_is_a_minion_with_its_id_address_and_identity(salt_master, agent, cloud, aws,
                                                                    event_listener):
    start = time.time()
    iid = launch(aws, agent, "minions")
    inst = agent.get(iid)
    config = json.loads(json.dumps(__import__("yaml").safe_load((inst.conf_dir / "minion").read_text())))
    assert config["id"] == iid and config["master"] == "127.0.0.1"
    assert config["autosign_grains"] == ["phoenix_identity_document", "phoenix_identity_signature"]
    accept(salt_master, iid)
    started(event_listener, salt_master, iid, start)
    grains = ping(salt_master, iid)
    assert grains["id"] == iid and grains["phoenix_private_ip"] == cloud.private_ip(iid)
    # the grains carry the document the instance's IMDS serves, and it verifies with the cloud's certificate
    parsed = verify(grains["phoenix_identity_document"], grains["phoenix_identity_signature"],
                    cloud.identity_certificate_pem, instance_id=iid, now=cloud.clock.datetime(),
                    max_age_seconds=600)
    assert parsed["privateIp"] == cloud.private_ip(iid)
    # the master saw them in the salt/auth event (auth_events_autosign_grains: [pend])
    auth = [e for e in event_listener.get_events([(salt_master.id, "salt/auth")], after_time=start)
            if e.data.get("id") == iid and e.data.get("act") == "pend"]
    assert auth and auth[0].data["autosign_grains"]["phoenix_identity_document"] == grains[
        "phoenix_identity_document"]
    # the minion generated its own key; the master holds that key, not one the agent planted
    minion_pub = (inst.root_dir / "etc" / "salt" / "pki" / "minion" / "minion.pub").read_text()
    master_pki = Path(salt_master.config["pki_dir"])
    assert (master_pki / "minions" / iid).read_text().strip() == minion_pub.strip()
    # the instance talks to the master from its own address
    assert connections_from(cloud.private_ip(iid), salt_master.config["ret_port"]) or \
        connections_from(cloud.private_ip(iid), salt_master.config["publish_port"])
    # terminating the instance ends its minion and every process it ran
    pids = agent.pids(iid)[iid]
    assert pids
    aws["autoscaling"].terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=True)
    wait_until(lambda: iid not in agent.running() and not agent.pids(iid), timeout=30,
               message=f"{iid}'s processes to end")
    assert not [p for p in pids if running(p)]


def test_reboot_restarts_the_instances_processes_and_boot_scripts(salt_master, agent, cloud, aws, tmp_path,
                                                                  event_listener):
    start = time.time()
    iid = launch(aws, agent, "reboots")
    accept(salt_master, iid)
    started(event_listener, salt_master, iid, start)
    ping(salt_master, iid)
    inst = agent.get(iid)
    # a service enabled on the instance: a boot script that starts a detached process (setsid, like a
    # daemon), started now through the minion and again by the agent at boot
    marker = tmp_path / "started"
    script = inst.boot_dir / "50-sleeper"
    script.write_text(f"#!/bin/sh\ncase \"$1\" in start) echo boot >> {marker}; "
                      "setsid sleep 3600 < /dev/null > /dev/null 2>&1 & ;; esac\n")
    script.chmod(0o755)
    ret = salt_master.salt_cli(timeout=30).run("cmd.run", f"{script} start", minion_tgt=iid)
    assert ret.returncode == 0, ret.stderr
    wait_until(lambda: len(agent.pids(iid).get(iid, [])) >= 2, message="the detached process")
    before = set(agent.pids(iid)[iid])
    rebooted = time.time()
    aws["ec2"].reboot_instances(InstanceIds=[iid])  # as one would reboot an EC2 instance
    cloud.agents.wait(iid, timeout=120)
    assert not before & set(agent.pids(iid).get(iid, [])), "a process survived the reboot"
    assert marker.read_text().splitlines() == ["boot", "boot"]  # started again by the boot
    assert inst.boots == 2 and inst.boot_log[-2:] == ["boot: 50-sleeper start -> 0", "boot: done"]
    started(event_listener, salt_master, iid, rebooted)  # same key, same id: no new acceptance
    ping(salt_master, iid)
    agent.stop(iid)
    assert agent.pids(iid) == {}


def request(address: str, port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def listening(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def highstate(salt_master, iid: str) -> dict[str, Any]:
    ret = salt_master.salt_cli(timeout=300).run("state.highstate", minion_tgt=iid)
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert isinstance(ret.data, dict) and ret.data, ret.stdout
    failed = {k: v["comment"] for k, v in ret.data.items() if v["result"] is not True}
    assert not failed, failed
    return ret.data


DEBUGGER = "/?__debugger__=yes&cmd=resource&f=style.css"


def test_the_webapp_role_serves_only_the_apps_routes_through_the_instances_nginx(salt_master, agent, cloud,
                                                                                   aws, event_listener):
    start = time.time()
    iid = launch(aws, agent, "web")
    accept(salt_master, iid)
    started(event_listener, salt_master, iid, start)
    ip = cloud.private_ip(iid)
    first = highstate(salt_master, iid)
    assert any(k.startswith("nginx_whitelist_|-webapp-allowlist") for k in first)
    changed = {k.split("_|-")[1] for k, v in first.items() if v["changes"]}
    assert {"webapp-app-files", "webapp-nginx-site", "webapp-allowlist", "webapp-nginx-reload"} <= changed
    # the app is a real process on the instance's own address, with the debugger on
    status, body = request(ip, 8000, "/console")
    assert status == 200 and b"Console" in body
    status, body = request(ip, 8000, DEBUGGER)
    assert status == 200 and body  # the debugger's own stylesheet
    # through the instance's NGINX only the app's routes pass
    for path in ("/console", DEBUGGER, "/items/x", "/admin"):
        assert request(ip, 8080, path)[0] == 404, path
    status, body = request(ip, 8080, "/health")
    assert status == 200 and json.loads(body) == {"status": "ok", "instance": iid}
    assert request(ip, 8080, "/items/7")[0] == 200
    assert not listening("127.0.0.1", 8080)  # on the instance's address, not on 127.0.0.1
    # a second highstate changes nothing
    second = highstate(salt_master, iid)
    assert {k: v["changes"] for k, v in second.items() if v["changes"]} == {}
    # a reboot brings both services back from their boot scripts, without a highstate
    inst = agent.get(iid)
    assert sorted(p.name for p in inst.boot_dir.iterdir()) == ["50-webapp-app", "60-webapp-nginx"]
    agent.reboot(iid)
    assert inst.boot_log[-3:] == ["boot: 50-webapp-app start -> 0", "boot: 60-webapp-nginx start -> 0",
                                  "boot: done"]
    assert request(ip, 8080, "/health")[0] == 200 and request(ip, 8080, "/console")[0] == 404
    # the instance ends: nothing of it keeps running or listening
    pids = agent.pids(iid)[iid]
    assert len(pids) >= 4  # minion processes, the app, nginx master and worker
    aws["autoscaling"].terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=True)
    wait_until(lambda: iid not in agent.running(), timeout=30, message=f"{iid} to stop")
    assert not [p for p in pids if running(p)]
    assert not listening(ip, 8080) and not listening(ip, 8000)
