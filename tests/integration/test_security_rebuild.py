"""Early rebuild for pending security updates, with real daemons: every instance of a localcloud group
is a real salt-minion (id = instance id) that reports ``phoenix_patches.pending`` through the mine
(simulated feed, switched by pillar). A feed announces an update; once localcloud's clock has passed the
threshold (6 h), ``salt-run state.orchestrate orch.rebuild`` cycles the group; afterwards no instance has
a pending update, and a second early cycle within the threshold is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from localcloud import LocalCloud
from localcloud.salt_instance import SaltInstanceAgent
from tests.integration.test_rebuild_localcloud import CREDS, REPO, TEMPLATE, wait_until

pytestmark = pytest.mark.daemons

LOADER_DIRS = {
    "file_roots": {"base": [str(REPO / "salt")]},
    "module_dirs": [str(REPO / "_modules")],
    "states_dirs": [str(REPO / "_states")],
    "utils_dirs": [str(REPO / "_utils")],
}
FAST = {"poll_initial": 0.2, "poll_max": 1}


class FleetMinions(SaltInstanceAgent):
    """localcloud instance agent: a real salt-minion per instance (i10b's agent). Provisioning stand-in,
    once the minion answers: the OS update (``phoenix_patches.simulate_upgrade``), a mine update (what
    ``mine_interval`` does on its own), then CONTINUE."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir, master_port=0, publish_port=0)
        self.salt_master: Any = None
        self.provisioned: list[str] = []
        self.errors: list[str] = []

    def start(self, instance_id: str) -> None:
        super().start(instance_id)
        try:
            cli = self.salt_master.salt_cli(timeout=30)
            # right after start a minion may not be subscribed to the master's publishes yet: retry
            wait_until(lambda: (lambda r: r.returncode == 0 and r.data is True)(
                cli.run("test.ping", minion_tgt=instance_id)), timeout=120, interval=0.5,
                what=f"{instance_id} to answer test.ping")
            for fun in ("phoenix_patches.simulate_upgrade", "mine.update"):
                ret = cli.run(fun, minion_tgt=instance_id)
                assert ret.returncode == 0 and ret.data, f"{fun}: {ret.stdout} {ret.stderr}"
            asg = boto3.client("autoscaling", endpoint_url=self.cloud.endpoint, region_name="us-east-1")
            group = next(r["group"] for r in self.cloud.instances() if r["instance_id"] == instance_id)
            wait_until(lambda: next(r["state"] for r in self.cloud.instances()
                                    if r["instance_id"] == instance_id) == "Pending:Wait", timeout=60)
            asg.complete_lifecycle_action(AutoScalingGroupName=group, LifecycleHookName="provision",
                                          InstanceId=instance_id, LifecycleActionResult="CONTINUE")
            self.provisioned.append(instance_id)
        except Exception as exc:  # reported by the test, with the end of the minion's log
            try:
                tail = self.get(instance_id).log_file.read_text(errors="replace")[-1500:]
            except Exception:
                tail = "(no minion log)"
            self.errors.append(f"{instance_id}: {exc}\n{tail}")


@pytest.fixture(scope="module")
def fleet_agent(tmp_path_factory):
    return FleetMinions(tmp_path_factory.mktemp("instances"))


@pytest.fixture(scope="module")
def cloud(fleet_agent):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDS.items():  # the daemons inherit the environment: dummy credentials
            mp.setenv(key, value)
        with LocalCloud(boot_seconds=0.5, agent=fleet_agent) as c:
            yield c


@pytest.fixture(scope="module")
def feed_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("feed") / "security-feed.json"
    path.write_text(json.dumps({"packages": {"openssl": "3.0.11-1~deb12u2"}, "advisories": []}))
    return path


@pytest.fixture(scope="module")
def salt_master(salt_factories, cloud, feed_file, fleet_agent, tmp_path_factory):
    pillar_root = tmp_path_factory.mktemp("pillar")
    (pillar_root / "top.sls").write_text("base:\n  '*':\n    - phoenix\n")
    (pillar_root / "phoenix.sls").write_text(json.dumps({
        "mine_functions": {"phoenix_patches.pending": []},
        "phoenix": {
            "aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
            "patches": {"source": "feed", "feed": str(feed_file)},
            "rebuild": {"security_threshold": "6h"},
        },
    }))
    # the master's config too: ``salt-run salt.cmd`` (used to read rebuild.status) compiles no pillar
    controller = {"phoenix": {"aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
                              "rebuild": {"security_threshold": "6h"}}}
    factory = salt_factories.salt_master_daemon(
        "security-master", overrides={"auto_accept": True, "interface": "127.0.0.1", **LOADER_DIRS,
                                      "pillar_roots": {"base": [str(pillar_root)]}, **controller})
    with factory.started(start_timeout=120):
        fleet_agent.salt_master = factory
        fleet_agent.master_port = factory.config["ret_port"]
        fleet_agent.publish_port = factory.config["publish_port"]
        yield factory


def status(master: Any) -> dict[str, Any]:
    ret = master.salt_run_cli(timeout=120).run("salt.cmd", "rebuild.status", "stack=web")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    return ret.data


def refresh_mine(master: Any, ids: set[str]) -> None:
    """What ``mine_interval`` does by itself, now (one minion at a time, retried: a loaded machine)."""
    cli = master.salt_cli(timeout=60)
    for iid in sorted(ids):
        wait_until(lambda: (lambda r: r.returncode == 0 and r.data is True)(cli.run("mine.update", minion_tgt=iid)),
                   timeout=240, interval=1, what=f"mine.update on {iid}")


def announce(feed_file: Path, published: float, version: str) -> None:
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(published))
    feed_file.write_text(json.dumps({"packages": {"openssl": version}, "advisories": [
        {"id": f"DSA-{version}", "package": "openssl", "version": version, "published": moment}]}))


def test_pending_security_update_cycles_the_group_early(salt_master, cloud, fleet_agent, feed_file) -> None:
    cfn = boto3.client("cloudformation", endpoint_url=cloud.endpoint, region_name="us-east-1")
    params = {"RebuildTimestamp": "initial", "ImageId": "ami-12c6146b", "InstanceType": "t3.micro", "MinSize": "1",
              "MaxSize": "4", "DesiredCapacity": "2", "RollingMaxBatchSize": "1",
              "RollingMinInstancesInService": "1", "HookHeartbeatTimeout": "900"}
    cfn.create_stack(StackName="web", TemplateBody=TEMPLATE, Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
    wait_until(lambda: len(fleet_agent.provisioned) == 2 or fleet_agent.errors, timeout=180,
               what="two provisioned instances")
    assert not fleet_agent.errors
    first = set(fleet_agent.provisioned)

    before = status(salt_master)
    assert {r["instance_id"]: (r["patch_reported"], r["security_pending"]) for r in before["instances"]} == {
        iid: (True, 0) for iid in first}
    assert before["security"]["due"] is False

    # the feed announces a fix; the fleet's mine reports it pending, since the advisory's publication
    announce(feed_file, cloud.clock.now(), "3.0.15-1~deb12u1")
    refresh_mine(salt_master, first)
    fresh = status(salt_master)
    assert all(r["security_pending"] == 1 and r["patch_lag_seconds"] < 3600 for r in fresh["instances"])
    assert fresh["security"]["due"] is False

    cloud.advance(6 * 3600 + 120)  # the threshold passes on localcloud's clock
    lagging = status(salt_master)
    assert all(r["patch_lag_seconds"] >= 6 * 3600 for r in lagging["instances"])
    assert lagging["security"]["due"] is True and set(lagging["security"]["instances"]) == first
    assert lagging["schedule"]["due"] is False, "the age rule alone would not cycle yet"

    ret = salt_master.salt_run_cli(timeout=600).run("state.orchestrate", "orch.rebuild",
                                                    f"pillar={json.dumps({'stack': 'web', 'fix_policy': True, **FAST})}")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert "due for security updates" in ret.stdout
    wait_until(lambda: len(fleet_agent.provisioned) == 4 or fleet_agent.errors, timeout=120,
               what="two new provisioned instances")
    assert not fleet_agent.errors

    after = status(salt_master)
    now_ids = {r["instance_id"] for r in after["instances"]}
    assert len(now_ids) == 2 and not now_ids & first
    assert all(r["patch_reported"] and r["security_pending"] == 0 for r in after["instances"]), after["instances"]
    assert after["security"]["due"] is False

    # at most one early cycle per threshold: an old advisory lags at once, but a cycle has just run
    announce(feed_file, cloud.clock.now() - 7 * 3600, "3.0.16-1~deb12u1")
    refresh_mine(salt_master, now_ids)
    held = status(salt_master)
    assert all(r["patch_lag_seconds"] >= 7 * 3600 for r in held["instances"])
    assert held["security"]["due"] is False and "at most one early cycle" in held["security"]["reason"]
