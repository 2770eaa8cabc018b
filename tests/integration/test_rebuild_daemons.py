"""Real salt-master + salt-minion daemons: ``salt-run state.orchestrate orch.rebuild`` rebuilds a fleet on
localcloud, and the ``phoenix/rebuild/<group>/...`` progress events arrive on the master's event bus
(fired on the master bus by the orchestration, and sent by a minion running ``rebuild.cycle``)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from localcloud import LocalCloud
from tests.integration.test_rebuild_localcloud import (CREDS, REPO, Provisioner, in_service,
                                                       make_fleet)

pytestmark = pytest.mark.daemons

LOADER_DIRS = {
    "file_roots": {"base": [str(REPO / "salt")]},
    "module_dirs": [str(REPO / "_modules")],
    "states_dirs": [str(REPO / "_states")],
    "utils_dirs": [str(REPO / "_utils")],
}


@pytest.fixture(scope="module")
def cloud():
    provisioner = Provisioner()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDS.items():  # the daemons inherit the environment: dummy credentials
            mp.setenv(key, value)
        try:
            with LocalCloud(boot_seconds=0.3, agent=provisioner) as c:
                provisioner.endpoint = c.endpoint
                c.provisioner = provisioner
                yield c
        finally:
            provisioner.shutdown()


@pytest.fixture(scope="module")
def aws_clients(cloud):
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    return {s: session.client(s, endpoint_url=cloud.endpoint) for s in ("cloudformation", "autoscaling", "ec2")}


@pytest.fixture(scope="module")
def salt_master(salt_factories, cloud, tmp_path_factory):
    """The master: its own config names localcloud (for orchestration, which runs on the master), and its
    pillar tree (pillar_roots + top.sls) gives the minion every setting: the minion's config has none."""
    pillar_root = tmp_path_factory.mktemp("master-pillar")
    (pillar_root / "top.sls").write_text("base:\n  'rebuild-minion':\n    - phoenix\n")
    (pillar_root / "phoenix.sls").write_text(yaml.safe_dump({"phoenix": {
        "aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
        "rebuild": {"stack": "web", "max_age": "6h"}}}))
    aws = {"phoenix": {"aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2}}}
    factory = salt_factories.salt_master_daemon(
        "rebuild-master", overrides={"auto_accept": True, "interface": "127.0.0.1", **LOADER_DIRS, **aws,
                                     "pillar_roots": {"base": [str(pillar_root)]}})
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="module")
def salt_minion(salt_master, cloud):
    factory = salt_master.salt_minion_daemon("rebuild-minion", overrides={**LOADER_DIRS})
    assert "phoenix" not in factory.config  # every Phoenix setting of this minion comes from the master's pillar
    with factory.started(start_timeout=120):
        yield factory


def wait_events(event_listener, daemon_id: str, pattern: str, after: float, timeout: float = 120):
    """Poll the listener until an event matching ``pattern`` shows up (events arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = event_listener.get_events([(daemon_id, pattern)], after_time=after)
        if found:
            return sorted(found, key=lambda e: e.stamp)
        time.sleep(0.2)
    raise AssertionError(f"no event {pattern} from {daemon_id} within {timeout}s")


def test_orchestration_rebuilds_and_reports_on_the_master_bus(salt_master, salt_minion, cloud, aws_clients,
                                                              event_listener):
    fleet = make_fleet(cloud, cloud.provisioner, aws_clients)
    group = fleet["group"]
    start = time.time()
    pillar = {"stack": "web", "force": True, "fix_policy": True, "poll_initial": 0.1, "poll_max": 0.5}
    ret = salt_master.salt_run_cli(timeout=300).run("state.orchestrate", "orch.rebuild",
                                                    f"pillar={json.dumps(pillar)}")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    finished = wait_events(event_listener, salt_master.id, f"phoenix/rebuild/{group}/finished", start)
    assert finished[-1].data["replaced"] == 4 and finished[-1].data["result"] is True
    tags = {e.tag for e in event_listener.get_events([(salt_master.id, f"phoenix/rebuild/{group}/*")],
                                                     after_time=start)}
    for stage in ("started", "preflight", "triggered", "instance/replaced", "instance/in_service", "progress"):
        assert f"phoenix/rebuild/{group}/{stage}" in tags
    now_ids = {i["InstanceId"] for i in in_service(aws_clients, group)}
    assert len(now_ids) == 4 and not now_ids & fleet["original"]


def test_minion_cycle_events_reach_the_master(salt_master, salt_minion, cloud, aws_clients, event_listener):
    fleet = make_fleet(cloud, cloud.provisioner, aws_clients)
    group = fleet["group"]
    start = time.time()
    ret = salt_minion.salt_call_cli(timeout=300).run("rebuild.cycle", "stack=web", "fix_policy=True",
                                                     "poll_initial=0.1", "poll_max=0.5")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert ret.data["result"] is True and ret.data["replaced"] == 4
    finished = wait_events(event_listener, salt_master.id, f"phoenix/rebuild/{group}/finished", start)
    event = finished[-1].data
    # sent by a minion: the master wraps it, with the minion's (authenticated) id beside the payload
    assert event["id"] == salt_minion.id and event["data"]["replaced"] == 4


def test_minion_reads_its_settings_from_the_masters_pillar(salt_master, salt_minion, cloud, aws_clients):
    """rebuild.status with no argument on a minion whose config has no Phoenix setting: region, endpoint,
    stack and max_age all come from the pillar the master compiled for it."""
    fleet = make_fleet(cloud, cloud.provisioner, aws_clients)
    cloud.api_calls(reset=True)
    ret = salt_minion.salt_call_cli(timeout=120).run("rebuild.status")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert ret.data["stack"] == "web" and ret.data["group"] == fleet["group"] and ret.data["count"] == 4
    assert ret.data["max_age_seconds"] == 6 * 3600
    assert cloud.api_calls().get("cloudformation:DescribeStacks")  # it went to localcloud
