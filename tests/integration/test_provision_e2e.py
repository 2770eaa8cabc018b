"""Part 2 end to end: one full provisioning cycle and one retirement with real daemons, the documented
master configs (phoenix-lifecycle.conf + phoenix-secrets.conf), localcloud instances that are real
salt-minions, the real web role (NGINX + Flask) and nothing completed by the test:

launch -> engine -> reactor -> orch.provision: key (identity document) -> highstate (OS updates stand-in
that says "reboot required", the deployed commit from S3 fetched through a git server that needs the
SSM-held token, the web role serving the app from that checkout) -> EC2 reboot, minion back -> health
through NGINX -> profile swap + launch-session revocation -> CONTINUE -> secrets closed -> inventory.
Then a new commit is recorded in S3 and the instance is replaced: the new one serves the new commit (its
allowlist follows the new app's routes), the old one goes through orch.retire (revocation policy removed,
inventory without it). Afterwards everything the run left is searched. A second test records an unknown
and then no commit: each launch is ABANDONed with the reason.
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

from devtools.gitserver import GitServer, commit_files, make_repository, push
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


SAMPLE_APP = REPO / "salt" / "webapp" / "files" / "app" / "webapp_app.py"
COMMIT_HEADER = "X-App-Commit"


def release(number: int, notes: bool = False) -> str:
    """The repository's app module: the sample app plus a route naming the release (and, from release 2
    on, one more route, which the allowlist must then serve)."""
    extra = ('\n    @app.route("/release/notes")\n    def notes():\n        return "notes\\n"\n' if notes else "")
    return (f'"""The application at release {number}: the sample app (webapp_app.py) plus its release."""\n\n'
            "from webapp_app import create_app as sample_app\n\n\n"
            "def create_app():\n    app = sample_app()\n\n"
            f'    @app.route("/release")\n    def release():\n        return "release {number}\\n"\n'
            f"{extra}\n    return app\n")


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    """The application's repository: the sample Flask app of salt/webapp and its release module."""
    root = tmp_path_factory.mktemp("git")
    bare, sha = make_repository(root, "app.git", {"webapp_app.py": SAMPLE_APP.read_text(), "release.py": release(1)})
    with GitServer(root, SECRET) as server:
        yield {"server": server, "url": server.url("app.git"), "sha": sha, "bare": bare,
               "work": root / "app.git.work"}


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
    webapp = yaml.safe_load(WEBAPP_PILLAR.read_text())
    # the app is the deployed checkout (phoenix:deploy:target), at the commit recorded in S3
    webapp["phoenix"]["webapp"].update(source="deploy", app="release:create_app()", commit_header=COMMIT_HEADER)
    (root / "webapp.sls").write_text(yaml.safe_dump(webapp))
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


def make_group(aws, setup, desired: int, group: str = GROUP) -> None:
    aws["ec2"].create_launch_template(LaunchTemplateName=f"{group}-lt", LaunchTemplateData={
        "ImageId": lm.AMI, "InstanceType": "t3.micro", "IamInstanceProfile": {"Arn": setup["profiles"]["launch"]}})
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=group, MinSize=0, MaxSize=4, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": f"{group}-lt", "Version": "$Latest"}, AvailabilityZones=["us-east-1a"])
    for hook, transition, default in (("provision", lm.LAUNCHING, "ABANDON"), ("retire", lm.TERMINATING, "CONTINUE")):
        aws["autoscaling"].put_lifecycle_hook(
            AutoScalingGroupName=group, LifecycleHookName=hook, LifecycleTransition=transition,
            NotificationTargetARN=setup["queue_arn"], RoleARN="arn:aws:iam::123456789012:role/hooks",
            HeartbeatTimeout=300, DefaultResult=default)
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=desired)


def address_of(aws, iid: str) -> str:
    return aws["ec2"].describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]


def through_nginx(aws, iid: str, path: str) -> tuple[int, str, dict[str, str]]:
    """``(status, body, headers)`` of ``GET path`` through the instance's NGINX (its AWS address)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address_of(aws, iid)}:8080{path}", timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


def instance_root(agent, iid: str) -> Path:
    return agent.base_dir / iid if (agent.base_dir / iid).exists() else next(agent.base_dir.glob(f"*{iid}*"))


def serves_commit(aws, agent, iid: str, sha: str, number: int) -> None:
    """The instance's NGINX serves the app of the deployed checkout at ``sha`` (release ``number``)."""
    record = json.loads(next(instance_root(agent, iid).rglob("deployed_commit.json")).read_text())
    assert record["commit"] == sha and record["source"] == f"s3://{BUCKET}/{KEY}", record
    status, body, headers = through_nginx(aws, iid, "/health")
    assert status == 200 and json.loads(body)["instance"] == iid, (status, body)
    assert headers.get(COMMIT_HEADER) == sha, headers
    assert through_nginx(aws, iid, "/release")[:2] == (200, f"release {number}\n")
    # the allowlist comes from the deployed app's url_map: release 2's extra route is served, never before
    assert through_nginx(aws, iid, "/release/notes")[0] == (200 if number >= 2 else 404)
    assert through_nginx(aws, iid, "/console")[0] == 404


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
    # the deployed commit: exactly the SHA in S3, fetched with the token (the server refuses without it),
    # and the app NGINX serves is that checkout's
    serves_commit(aws, agent, iid, git["sha"], 1)
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
    assert f"{address_of(aws, iid)} ssh-ed25519 " in known and iid in known

    # a new commit is recorded: the rebuild (the instance replaced) deploys it; the old instance goes
    # through orch.retire, which removes its revocation policy and its inventory entry
    second = commit_files(git["work"], {"release.py": release(2, notes=True)}, "release 2")
    push(git["work"], git["bare"])
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=(second + "\n").encode())
    rebuild_start = time.time()
    aws["autoscaling"].terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=False)
    ready = wait_until(lambda: {i for i, s in lm.instances(aws, GROUP).items() if s == "InService" and i != iid} or None,
                       timeout=400, interval=0.5, message="the replacement in service")
    (new,) = ready
    lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{new}", rebuild_start, timeout=120,
                  where=lambda e: e.data.get("step") == "inventory")
    assert ledger.latest(new).state == "continued", ledger.notes(new)
    serves_commit(aws, agent, new, second, 2)
    wait_until(lambda: iid not in lm.instances(aws, GROUP), timeout=180, interval=0.5, message="the old one gone")
    lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", rebuild_start, timeout=60,
                  where=lambda e: e.data.get("step") == "inventory")
    assert lm.settled(ledger, iid, lm.TERMINATING).state == "continued"
    assert f"phoenix-revoke-{iid}" not in aws["iam"].list_role_policies(RoleName=f"{GROUP}-launch")["PolicyNames"]
    # the inventory holds the new instance only (refreshed again when the new one finished, if it came later)
    wait_until(lambda: iid not in (salt_master.inventory / f"{GROUP}.known_hosts").read_text(), timeout=60,
               interval=0.5, message="the old instance out of known_hosts")
    assert new in (salt_master.inventory / f"{GROUP}.known_hosts").read_text()

    # scale in: the last instance retires too
    retire_start = time.time()
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=0)
    wait_until(lambda: not lm.instances(aws, GROUP), timeout=180, interval=0.5, message="the instance terminated")
    lm.wait_event(event_listener, salt_master.id, f"phoenix/lifecycle/step/{new}", retire_start, timeout=60,
                  where=lambda e: e.data.get("step") == "inventory")
    assert new not in (salt_master.inventory / f"{GROUP}.known_hosts").read_text()

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


def test_an_unknown_or_missing_recorded_commit_abandons_with_the_reason(salt_master, aws, setup, event_listener):
    """The SHA in S3 names no commit of the repository, then the object is gone: each launch stops at the
    deployed commit's state and is ABANDONed at once, with that state's reason (nothing else is deployed)."""
    group = "lc-web-bad"
    unknown = "f" * 40
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=(unknown + "\n").encode())
    ledger = Ledger(f"{salt_master.config['cachedir']}/phoenix/lifecycle.sqlite")
    cases = [(f"commit {unknown} is not in", None),
             (f"s3://{BUCKET}/{KEY} does not exist", lambda: aws["s3"].delete_object(Bucket=BUCKET, Key=KEY))]
    make_group(aws, setup, 0, group=group)
    for reason, prepare in cases:
        if prepare:
            prepare()
        start = time.time()
        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
        abandoned = lm.wait_event(event_listener, salt_master.id, "phoenix/lifecycle/abandoned/*", start,
                                  timeout=300, where=lambda e, reason=reason: e.data.get("group") == group
                                  and reason in (e.data.get("reason") or ""))
        # no replacement may start while the next case is prepared
        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
        iid = abandoned.data["instance_id"]
        assert reason in abandoned.data["reason"] and "deployed-commit" in abandoned.data["reason"], abandoned.data
        action = lm.settled(ledger, iid)
        assert action.state == "abandoned" and reason in action.reason
        failed = [e.data for e in lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start)
                  if e.data["result"] is False]
        assert [f["step"] for f in failed] == ["highstate"], failed
        wait_until(lambda: not lm.instances(aws, group), timeout=180, interval=0.5, message=f"{group} empty")


def test_a_failed_profile_swap_abandons_with_the_reason(salt_master, aws, setup, cloud, git, event_listener):
    """Everything passes up to the health check, then AWS refuses ReplaceIamInstanceProfileAssociation: the
    instance is ABANDONed at once with that reason and never serves on its launch profile."""
    from localcloud.awsquery import AwsError

    group = "lc-web-swap"
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=(git["sha"] + "\n").encode())
    ledger = Ledger(f"{salt_master.config['cachedir']}/phoenix/lifecycle.sqlite")

    def refuse(request, forward):
        raise AwsError("UnauthorizedOperation", "You are not authorized to perform this operation.", 403)

    cloud.interceptors["ec2:ReplaceIamInstanceProfileAssociation"] = refuse
    try:
        start = time.time()
        make_group(aws, setup, 1, group=group)
        abandoned = lm.wait_event(event_listener, salt_master.id, "phoenix/lifecycle/abandoned/*", start,
                                  timeout=400, where=lambda e: e.data.get("group") == group)
        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
    finally:
        del cloud.interceptors["ec2:ReplaceIamInstanceProfileAssociation"]
    iid = abandoned.data["instance_id"]
    assert "profile:" in abandoned.data["reason"] and "UnauthorizedOperation" in abandoned.data["reason"], abandoned.data
    assert lm.settled(ledger, iid).state == "abandoned"
    steps = [e.data for e in lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/step/{iid}", start)]
    assert [s["step"] for s in steps if s["result"] is False] == ["profile"], steps
    assert {"highstate", "health"} <= {s["step"] for s in steps if s["result"]}
    assert not lm.events(event_listener, salt_master.id, f"phoenix/lifecycle/continued/{iid}", start)
    # a replacement the group launched before it was scaled to 0 goes its own way first
    wait_until(lambda: not lm.instances(aws, group), timeout=600, interval=0.5, message=f"{group} empty")
