"""The secrets window and the inventory with real daemons: a salt-master configured with
conf/master.d/phoenix-secrets.conf, real minions whose ids are localcloud instance ids, the real ledger, SSM
and S3 in localcloud, and a git server that refuses every request without the deploy token.

Proof of possession is the real use: a minion *inside* the window deploys the app through the token-protected
git server (so the secret reached it through pillar); a minion outside it, and the same minion after
CONTINUE, fails for want of the token. No test calls pillar.items during the window (its return would put
the values into the job cache). Afterwards every file, log line and event the run left is searched.

Key acceptance is not under test here (issue 10's engine does it): this master auto-accepts.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import yaml

from devtools.gitserver import GitServer, make_repository
from localcloud import LocalCloud
from localcloud.testing import wait_until
from phoenix.aws import AWS, settings_from
from phoenix.lifecycle import signal
from phoenix.lifecycle.ledger import LAUNCHING, Ledger
from tests.integration.secret_scan import EventCollector, scan

pytestmark = pytest.mark.daemons

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = (REPO / "localcloud" / "templates" / "web-fleet.yaml").read_text()
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
SECRET = "phx-secret-" + secrets.token_hex(16)
PARAM = "/phoenix/web/deploy-token"
BUCKET, KEY = "releases", "web/deployed-commit"
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def env():
    with pytest.MonkeyPatch.context() as mp:
        for k, v in CREDS.items():  # the daemons inherit the environment: dummy credentials
            mp.setenv(k, v)
        yield


@pytest.fixture(scope="module")
def cloud(env):
    with LocalCloud(boot_seconds=0.1) as cl:
        session = boto3.session.Session(region_name="us-east-1")
        c = {s: session.client(s, endpoint_url=cl.endpoint) for s in ("cloudformation", "autoscaling", "ssm", "s3", "sqs")}
        params = {"RebuildTimestamp": "initial", "DesiredCapacity": "2", "MaxSize": "4", "MinSize": "0"}
        c["cloudformation"].create_stack(StackName="web", TemplateBody=TEMPLATE, Capabilities=["CAPABILITY_IAM"],
                                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
        out = {o["OutputKey"]: o["OutputValue"]
               for o in c["cloudformation"].describe_stacks(StackName="web")["Stacks"][0]["Outputs"]}

        def waiting():
            g = c["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[out["GroupName"]])
            return sorted(i["InstanceId"] for i in g["AutoScalingGroups"][0]["Instances"]
                          if i["LifecycleState"] == "Pending:Wait")

        ids = wait_until(lambda: len(waiting()) == 2 and waiting(), message="2 instances Pending:Wait")
        tokens: dict[str, str] = {}

        def drain():
            for m in c["sqs"].receive_message(QueueUrl=out["HookQueueUrl"], MaxNumberOfMessages=10).get("Messages", []):
                body = json.loads(m["Body"])
                if "LifecycleActionToken" in body:
                    tokens[body["EC2InstanceId"]] = body["LifecycleActionToken"]
            return set(ids) <= set(tokens)

        wait_until(drain, message="the lifecycle notifications")
        c["ssm"].put_parameter(Name=PARAM, Value=SECRET, Type="SecureString")
        c["s3"].create_bucket(Bucket=BUCKET)
        cl.test = {"clients": c, "outputs": out, "ids": ids, "tokens": tokens, "group": out["GroupName"]}
        yield cl


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    root = tmp_path_factory.mktemp("git")
    bare, sha = make_repository(root, "app.git", {"app.py": "VERSION = 1\n"})
    with GitServer(root, SECRET) as server:
        yield {"server": server, "url": server.url("app.git"), "sha": sha}


@pytest.fixture(scope="module")
def salt_master(salt_factories, cloud, git, tmp_path_factory):
    pillar_root = tmp_path_factory.mktemp("pillar")
    (pillar_root / "top.sls").write_text("base:\n  '*':\n    - phoenix\n")
    (pillar_root / "phoenix.sls").write_text(yaml.safe_dump({"phoenix": {
        "secrets": {"ssm": {"deploy_token": PARAM}},
        "aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
        "deploy": {"bucket": BUCKET, "key": KEY, "repository": git["url"], "target": "srv/app",
                   "record": "var/lib/phoenix/deployed_commit.json", "token_secret": "deploy_token"},
        "inventory": {"host_key_dir": "etc/ssh"}}}))
    documented = yaml.safe_load((REPO / "conf" / "master.d" / "phoenix-secrets.conf").read_text())
    ledger = tmp_path_factory.mktemp("ledger") / "lifecycle.sqlite"
    overrides = {
        **documented, "interface": "127.0.0.1", "auto_accept": True,
        "file_roots": {"base": [str(REPO / "salt")]}, "pillar_roots": {"base": [str(pillar_root)]},
        "runner_dirs": [str(REPO / "_runners")], "pillar_dirs": [str(REPO / "_pillar")],
        "module_dirs": [str(REPO / "_modules")], "utils_dirs": [str(REPO / "_utils")],
        "log_level_logfile": "debug",
        "phoenix": {"aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
                    "lifecycle": {"ledger": str(ledger)},
                    "inventory": {"dir": str(tmp_path_factory.mktemp("inventory")), "user": "admin", "timeout": 20}},
    }
    # the factories manager hands its own (session-start) environment to every daemon: add the credentials
    saved = {k: salt_factories.environ.get(k) for k in CREDS}
    salt_factories.environ.update(CREDS)
    try:
        factory = salt_factories.salt_master_daemon("window-master", overrides=overrides)
        with factory.started(start_timeout=120):
            factory.ledger = Ledger(ledger)
            yield factory
    finally:
        for k, v in saved.items():
            if v is None:
                salt_factories.environ.pop(k, None)
            else:
                salt_factories.environ[k] = v


@pytest.fixture(scope="module")
def bus(event_listener):
    collector = EventCollector(event_listener)
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def minions(salt_master, cloud, bus):
    bus.ids.add(salt_master.id)
    started = {}
    stack = []
    try:
        for instance_id in cloud.test["ids"]:
            # instance ids make the minion's unix socket paths under basetemp longer than AF_UNIX allows:
            # its event bus goes over TCP on 127.0.0.1 instead (tcp_pub_port/tcp_pull_port from the factory)
            factory = salt_master.salt_minion_daemon(instance_id, overrides={
                "module_dirs": [str(REPO / "_modules")], "states_dirs": [str(REPO / "_states")],
                "utils_dirs": [str(REPO / "_utils")], "log_level_logfile": "debug", "ipc_mode": "tcp"})
            keydir = Path(factory.config["root_dir"]) / "etc" / "ssh"
            keydir.mkdir(parents=True, exist_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f",
                            str(keydir / "ssh_host_ed25519_key")], check=True)
            cm = factory.started(start_timeout=120)
            cm.__enter__()
            stack.append(cm)
            started[instance_id] = factory
            bus.ids.add(instance_id)
        yield started
    finally:
        for cm in reversed(stack):
            cm.__exit__(None, None, None)



def adapter(cloud) -> AWS:
    return AWS(settings_from({"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2}))


def events(event_listener, daemon_id, tag, after, timeout=30.0):
    """The master's events with ``tag`` since ``after``, waiting until there is one: the event bus delivers them
    to the listener after the call that caused them has returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(event_listener.get_events([(daemon_id, tag)], after_time=after), key=lambda e: e.stamp)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def run(salt_master, instance_id, *args, timeout=120):
    ret = salt_master.salt_cli(timeout=timeout).run(*args, minion_tgt=instance_id)
    return ret


def test_only_the_minion_in_its_window_gets_the_secret_and_loses_it_at_continue(salt_master, minions, cloud, git,
                                                                                event_listener):
    start = time.time()
    inside, outside = cloud.test["ids"]
    group, tokens = cloud.test["group"], cloud.test["tokens"]
    boto3.client("s3", endpoint_url=cloud.endpoint, region_name="us-east-1").put_object(
        Bucket=BUCKET, Key=KEY, Body=git["sha"].encode())
    ledger = salt_master.ledger
    ledger.record(tokens[inside], inside, group, "provision", LAUNCHING, heartbeat_timeout=900,
                  global_deadline=time.time() + 3600)
    for mid in (inside, outside):
        assert run(salt_master, mid, "saltutil.refresh_pillar", "wait=True").returncode == 0
    # inside: the deploy through the token-protected git server works, so the value reached the minion
    ret = run(salt_master, inside, "state.single", "deployed_commit.deployed", "app")
    assert ret.returncode == 0, ret.stdout
    (state,) = ret.data.values()
    assert state["result"] is True and state["changes"] == {"commit": {"old": None, "new": git["sha"]}}
    # outside (Pending:Wait too, but no in-flight action in the ledger): nothing
    ret = run(salt_master, outside, "state.single", "deployed_commit.deployed", "app")
    (state,) = ret.data.values()
    assert state["result"] is False and "the secret 'deploy_token'" in state["comment"]
    refused = events(event_listener, salt_master.id, f"phoenix/secrets/{outside}/refused", start)
    assert refused and refused[-1].data["reason"] == "the ledger has no in-flight LAUNCHING action for it"
    granted = events(event_listener, salt_master.id, f"phoenix/secrets/{inside}/granted", start)
    assert granted and granted[-1].data["names"] == ["deploy_token"]

    # CONTINUE through issue 10's signal path; then how long can the minion still obtain the value?
    out = signal.complete(adapter(cloud), ledger, inside, LAUNCHING, "CONTINUE", None, lambda *a: None)
    assert out.get("sent"), out
    continued = time.monotonic()
    assert run(salt_master, inside, "saltutil.refresh_pillar", "wait=True").returncode == 0
    after = run(salt_master, inside, "pillar.get", "phoenix:secrets:values:deploy_token")
    FIGURES["pillar_seconds_after_continue"] = 0.0 if after.data == "" else time.monotonic() - continued
    assert after.data == ""
    # the ledger alone is not enough: an in-flight action while AWS says InService gives nothing
    ledger.record("forged-" + tokens[inside], inside, group, "provision", LAUNCHING, heartbeat_timeout=900,
                  global_deadline=time.time() + 3600)
    forged = time.time()
    assert run(salt_master, inside, "saltutil.refresh_pillar", "wait=True").returncode == 0
    assert run(salt_master, inside, "pillar.get", "phoenix:secrets:values:deploy_token").data == ""
    refused = events(event_listener, salt_master.id, f"phoenix/secrets/{inside}/refused", forged)
    assert refused and refused[-1].data["reason"] == "AWS says InService, not Pending:Wait"
    ledger.finish("forged-" + tokens[inside], "gone", "test clean-up")
    # pillar.items on the provisioned minion: references, never a value
    items = run(salt_master, inside, "pillar.items").data
    assert set(items["phoenix"]["secrets"]) == {"ssm"} and SECRET not in json.dumps(items)
    # a new commit cannot be fetched any more: the window is closed
    boto3.client("s3", endpoint_url=cloud.endpoint, region_name="us-east-1").put_object(
        Bucket=BUCKET, Key=KEY, Body=("1" * 40).encode())
    ret = run(salt_master, inside, "state.single", "deployed_commit.deployed", "app")
    (state,) = ret.data.values()
    assert state["result"] is False and "the secret 'deploy_token'" in state["comment"]


def test_compiled_pillar_storage_options(tmp_path):
    """Every master option that would store a compiled pillar, proven in-process (marker in plain pillar)."""
    import salt.config
    import salt.pillar

    marker = "marker-" + secrets.token_hex(8)
    (tmp_path / "pillar").mkdir()
    (tmp_path / "pillar" / "top.sls").write_text("base:\n  '*':\n    - p\n")
    (tmp_path / "pillar" / "p.sls").write_text(f"value: {marker}\n")
    documented = yaml.safe_load((REPO / "conf" / "master.d" / "phoenix-secrets.conf").read_text())

    def stored(**options) -> list[str]:
        root = tmp_path / f"root-{len(list(tmp_path.iterdir()))}"
        opts = salt.config.master_config(None)
        opts.update(root_dir=str(root), cachedir=str(root / "cache"), pki_dir=str(root / "pki"),
                    pillar_roots={"base": [str(tmp_path / "pillar")]}, file_client="local", ext_pillar=[],
                    **options)
        pillar = salt.pillar.get_pillar(opts, {}, "i-0123456789abcdef0", "base").compile_pillar()
        assert pillar["value"] == marker
        return [str(p) for p in root.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]

    assert stored(pillar_cache=False, minion_data_cache=True), "Salt's default minion_data_cache stores pillar"
    assert stored(pillar_cache=True, minion_data_cache=False), "pillar_cache stores pillar"
    safe = {k: documented[k] for k in ("pillar_cache", "minion_data_cache", "gpg_cache")}
    assert safe == {"pillar_cache": False, "minion_data_cache": False, "gpg_cache": False}
    assert stored(**safe) == []


def test_inventory_from_aws_and_salt_drops_terminated_instances(salt_master, minions, cloud):
    group = cloud.test["group"]
    ids = cloud.test["ids"]
    ec2 = boto3.client("ec2", endpoint_url=cloud.endpoint, region_name="us-east-1")
    addresses = {i["InstanceId"]: i["PrivateIpAddress"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
                 for i in r["Instances"]}
    ret = salt_master.salt_run_cli(timeout=120).run("inventory.refresh", group)
    assert ret.returncode == 0, ret.stdout + ret.stderr
    out = ret.data
    assert out["hosts"] == sorted(ids) and out["added"] == sorted(ids) and out["without_keys"] == []
    roster = yaml.safe_load(Path(out["roster"]).read_text())
    assert {k: v["host"] for k, v in roster.items()} == addresses
    assert all("StrictHostKeyChecking=yes" in v["ssh_options"] and v["user"] == "admin" for v in roster.values())
    for instance_id, factory in minions.items():
        pub = (Path(factory.config["root_dir"]) / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        found = subprocess.run(["ssh-keygen", "-F", addresses[instance_id], "-f", out["known_hosts"]],
                               capture_output=True, text=True)
        assert found.returncode == 0 and pub[1] in found.stdout
    again = salt_master.salt_run_cli(timeout=120).run("inventory.refresh", group).data
    assert again["changed"] is False and again["added"] == again["removed"] == []
    # termination: the instance leaves AWS's list and the files
    gone = ids[1]
    boto3.client("autoscaling", endpoint_url=cloud.endpoint, region_name="us-east-1").terminate_instance_in_auto_scaling_group(
        InstanceId=gone, ShouldDecrementDesiredCapacity=True)
    after = salt_master.salt_run_cli(timeout=120).run("inventory.refresh", group).data
    assert after["removed"] == [gone] and after["hosts"] == [ids[0]]
    assert gone not in Path(after["known_hosts"]).read_text() and gone not in Path(after["roster"]).read_text()
    assert addresses[gone] not in Path(after["known_hosts"]).read_text()


def test_nothing_the_run_left_holds_the_secret(salt_master, minions, cloud, bus):
    """Search every file under the master's and minions' root dirs (caches, job cache, logs, pki), every
    event the listener saw, and localcloud's records."""
    roots = [Path(salt_master.config["root_dir"])] + [Path(m.config["root_dir"]) for m in minions.values()]
    seen = bus.stop()
    records = json.dumps([cloud.instances(), cloud.api_calls(), cloud.timeline(cloud.test["group"])], default=str)
    result = scan(SECRET, roots, seen, {"localcloud records": records})
    files, lines, hits = result["files"], result["log_lines"], result["hits"]
    FIGURES.update(files=files, log_lines=lines, events=len(seen), hits=len(hits))
    print(f"\nsecret scan: {files} files, {lines} log lines, {len(seen)} events, {len(hits)} hits; "
          f"pillar after CONTINUE: {FIGURES.get('pillar_seconds_after_continue')} s")
    assert files > 50 and lines > 100 and len(seen) > 20
    assert hits == [], hits
