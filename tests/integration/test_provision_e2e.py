"""Part 2 end to end: one full provisioning cycle and one retirement with real daemons, the documented
master configs (phoenix-lifecycle.conf + phoenix-secrets.conf), localcloud instances that are real
salt-minions, the real web role (NGINX + Flask) and nothing completed by the test:

launch -> engine -> reactor -> orch.provision: key (identity document) -> highstate (OS updates stand-in
that says "reboot required", the deployed commit from S3 fetched through a git server that needs the
SSM-held token, the web role) -> EC2 reboot, minion back -> health through NGINX -> profile swap +
launch-session revocation -> CONTINUE -> secrets closed -> inventory; then scale-in -> orch.retire ->
revocation policy removed, inventory without it. Afterwards everything the run left is searched.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.gitserver import GitServer, make_repository
from localcloud import LocalCloud
from localcloud.salt_instance import SaltInstanceAgent
from localcloud.testing import client, wait_until
from phoenix.lifecycle.ledger import Ledger
from tests.integration import lifecycle_master as lm
from tests.integration.secret_scan import EventCollector, scan

pytestmark = pytest.mark.daemons

REPO = Path(__file__).resolve().parents[2]
ROOTS = Path(__file__).resolve().parent / "provision_roots" / "salt"
WEBAPP_PILLAR = Path(__file__).resolve().parent / "instance_roots" / "pillar" / "webapp.sls"
SECRET = "phx-e2e-" + secrets.token_hex(16)
PARAM = "/phoenix/lc-web/deploy-token"
BUCKET, KEY = "releases", "lc-web/deployed-commit"
GROUP = "lc-web"
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lm.CREDS.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> SaltInstanceAgent:
    return SaltInstanceAgent(tmp_path_factory.mktemp("instances"), master_port=0, publish_port=0,
                             minion_config={"log_level_logfile": "debug"})


@pytest.fixture(scope="module")
def cloud(agent) -> Iterator[LocalCloud]:
    with LocalCloud(boot_seconds=0.5, agent=agent) as running:
        yield running
    assert agent.pids() == {}, "an instance left processes behind"


@pytest.fixture(scope="module")
def aws(cloud) -> dict[str, Any]:
    return {n: client(cloud.endpoint, n) for n in ("autoscaling", "ec2", "sqs", "iam", "ssm", "s3")}


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    root = tmp_path_factory.mktemp("git")
    bare, sha = make_repository(root, "app.git", {"README": "the application source\n"})
    with GitServer(root, SECRET) as server:
        yield {"server": server, "url": server.url("app.git"), "sha": sha}


@pytest.fixture(scope="module")
def setup(aws, cloud, git):
    sqs = aws["sqs"]
    url = sqs.create_queue(QueueName="lifecycle", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"Service": "ec2.amazonaws.com"}}]})
    profiles = {}
    for kind in ("launch", "runtime"):
        aws["iam"].create_role(RoleName=f"{GROUP}-{kind}", AssumeRolePolicyDocument=trust)
        profile = aws["iam"].create_instance_profile(InstanceProfileName=f"{GROUP}-{kind}")["InstanceProfile"]
        aws["iam"].add_role_to_instance_profile(InstanceProfileName=f"{GROUP}-{kind}", RoleName=f"{GROUP}-{kind}")
        profiles[kind] = profile["Arn"]
    aws["ssm"].put_parameter(Name=PARAM, Value=SECRET, Type="SecureString")
    aws["s3"].create_bucket(Bucket=BUCKET)
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=git["sha"].encode())
    return {"queue_url": url, "queue_arn": arn, "profiles": profiles}


@pytest.fixture(scope="module")
def pillar(tmp_path_factory, cloud, git):
    root = tmp_path_factory.mktemp("pillar")
    (root / "top.sls").write_text("base:\n  'i-*':\n    - webapp\n    - phoenix\n")
    (root / "webapp.sls").write_text(WEBAPP_PILLAR.read_text())
    (root / "phoenix.sls").write_text(yaml.safe_dump({"phoenix": {
        "aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
        "secrets": {"ssm": {"deploy_token": PARAM}},
        "deploy": {"bucket": BUCKET, "key": KEY, "repository": git["url"], "target": "srv/app-source",
                   "record": "var/lib/phoenix/deployed_commit.json", "token_secret": "deploy_token"},
        # the harmless stand-in for apt: writes <root_dir>/run/reboot-required like a kernel update does
        "os_updates": {"commands": [[sys.executable, "-m", "devtools.fake_upgrade", "{root_dir}/run/reboot-required",
                                     "--reboot"]], "reboot_flag": "run/reboot-required"},
        "inventory": {"host_key_dir": "etc/ssh"}}}))
    return root


@pytest.fixture(scope="module")
def bus(event_listener):
    collector = EventCollector(event_listener)
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def salt_master(salt_factories, cloud, agent, setup, pillar, bus, tmp_path_factory):
    certificate = tmp_path_factory.mktemp("identity") / "localcloud-identity.pem"
    certificate.write_text(cloud.identity_certificate_pem)
    overrides = lm.master_overrides(cloud.endpoint, setup["queue_url"], certificate, pillar,
                                    lifecycle={"highstate_timeout": 300, "health_timeout": 60})
    overrides.update(yaml.safe_load((REPO / "conf" / "master.d" / "phoenix-secrets.conf").read_text()))
    inventory = tmp_path_factory.mktemp("inventory")
    overrides["phoenix"].update(profile={"runtime": setup["profiles"]["runtime"], "verify_timeout": 10},
                                inventory={"dir": str(inventory), "user": "admin", "timeout": 20},
                                os_updates={"reboot_timeout": 120})
    overrides.update(file_roots={"base": [str(REPO / "salt"), str(lm.LOADER_ROOTS), str(ROOTS)]},
                     pillar_dirs=[str(REPO / "_pillar")], log_level_logfile="debug")
    factory = salt_factories.salt_master_daemon("e2e-master", overrides=overrides)
    factory.environ.update(lm.CREDS)
    agent.master_port = factory.config["ret_port"]
    agent.publish_port = factory.config["publish_port"]
    bus.ids.add(factory.id)
    with factory.started(start_timeout=120):
        factory.inventory = inventory
        yield factory


def make_group(aws, setup, desired: int) -> None:
    aws["ec2"].create_launch_template(LaunchTemplateName=f"{GROUP}-lt", LaunchTemplateData={
        "ImageId": lm.AMI, "InstanceType": "t3.micro", "IamInstanceProfile": {"Arn": setup["profiles"]["launch"]}})
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=0, MaxSize=4, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": f"{GROUP}-lt", "Version": "$Latest"}, AvailabilityZones=["us-east-1a"])
    for hook, transition, default in (("provision", lm.LAUNCHING, "ABANDON"), ("retire", lm.TERMINATING, "CONTINUE")):
        aws["autoscaling"].put_lifecycle_hook(
            AutoScalingGroupName=GROUP, LifecycleHookName=hook, LifecycleTransition=transition,
            NotificationTargetARN=setup["queue_arn"], RoleARN="arn:aws:iam::123456789012:role/hooks",
            HeartbeatTimeout=300, DefaultResult=default)
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=desired)


def test_full_cycle_then_retire_and_nothing_left_holds_the_secret(salt_master, aws, setup, cloud, agent, git, bus,
                                                                 event_listener):
    start = time.time()
    make_group(aws, setup, 1)
    (iid,) = lm.wait_in_service(aws, GROUP, 1, timeout=400)
    # InService comes with CONTINUE; the steps after it (secrets, inventory) report a moment later
    lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start, timeout=120,
                  where=lambda e: e.data.get("step") == "inventory")
    ledger = Ledger(f"{salt_master.config['cachedir']}/phoenix/lifecycle.sqlite")
    assert ledger.latest(iid).state == "continued", ledger.notes(iid)
    steps = {e.data["step"]: e for e in lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start)}
    assert all(steps[s].data["result"] for s in steps), {s: e.data for s, e in steps.items()}
    assert {"claim", "minion", "highstate", "reboot", "health", "profile", "signal", "secrets", "inventory"} <= set(steps)
    assert steps["reboot"].data["rebooted"] is True and steps["reboot"].data["packages"] == ["linux-image-amd64"]
    assert steps["profile"].data["swapped"] is True
    # the deployed commit: exactly the SHA in S3, fetched with the token (the server refuses without it)
    root = agent.base_dir / iid if (agent.base_dir / iid).exists() else next(agent.base_dir.glob(f"*{iid}*"))
    record = json.loads(next(root.rglob("deployed_commit.json")).read_text())
    assert record["commit"] == git["sha"] and record["source"] == f"s3://{BUCKET}/{KEY}"
    assert any(status == 200 for _, _, status in git["server"].requests)
    # the profile: runtime now, and the launch role denies this instance's older sessions
    assoc = aws["ec2"].describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [iid]}])["IamInstanceProfileAssociations"]
    assert [a["IamInstanceProfile"]["Arn"] for a in assoc if a["State"] == "associated"] == [setup["profiles"]["runtime"]]
    assert f"phoenix-revoke-{iid}" in aws["iam"].list_role_policies(RoleName=f"{GROUP}-launch")["PolicyNames"]
    # the secrets window: closed at CONTINUE; the minion's pillar holds references only
    continued = steps["signal"].stamp
    FIGURES["secrets_closed_after_continue_s"] = round((steps["secrets"].stamp - continued).total_seconds(), 2)
    items = salt_master.salt_cli(timeout=60).run("pillar.items", minion_tgt=iid).data
    assert set(items["phoenix"]["secrets"]) == {"ssm"}
    # the inventory: the instance, its AWS address, its reported host key
    known = (salt_master.inventory / f"{GROUP}.known_hosts").read_text()
    address = aws["ec2"].describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    assert f"{address} ssh-ed25519 " in known and iid in known

    # retirement: scale in; orch.retire removes the revocation policy and the inventory entry
    retire_start = time.time()
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=0)
    wait_until(lambda: not lm.instances(aws, GROUP), timeout=180, interval=0.5, message="the instance terminated")
    lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", retire_start, timeout=60,
                  where=lambda e: e.data.get("step") == "inventory")
    assert iid not in (salt_master.inventory / f"{GROUP}.known_hosts").read_text()
    assert f"phoenix-revoke-{iid}" not in aws["iam"].list_role_policies(RoleName=f"{GROUP}-launch")["PolicyNames"]

    # the scan
    seen = bus.stop()
    records = json.dumps([cloud.instances(), cloud.api_calls(), cloud.timeline(GROUP)], default=str)
    result = scan(SECRET, [Path(salt_master.config["root_dir"]), agent.base_dir], seen,
                  {"localcloud records": records})
    FIGURES.update(result, hits=len(result["hits"]))
    print(f"\nfull-cycle secret scan: {result['files']} files, {result['log_lines']} log lines, "
          f"{result['events']} events, {len(result['hits'])} hits; secrets closed "
          f"{FIGURES['secrets_closed_after_continue_s']} s after CONTINUE")
    assert result["files"] > 100 and result["log_lines"] > 1000 and result["events"] > 50
    assert result["hits"] == [], result["hits"]
