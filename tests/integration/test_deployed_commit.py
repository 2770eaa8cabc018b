"""The deployed commit: SHA from S3 (localcloud), deploy from a real git repository behind a token.

The token is a real provisioning secret: the loopback git server refuses every request without it. The
tests prove git gets it through its environment only (a wrapper records git's argv), that states show
commits and never the token, and that a missing, malformed or unknown SHA fails with the ABANDON reason.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from devtools.gitserver import GitServer, commit_files, make_repository, push
from devtools.saltcall import salt_call
from localcloud import LocalCloud
from phoenix.aws import AWS, settings_from
from phoenix.provision import commit as c
from phoenix.provision.errors import ProvisionError, ProvisionInputError

REPO = Path(__file__).resolve().parents[2]
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET, KEY = "releases", "web/deployed-commit"


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    with pytest.MonkeyPatch.context() as mp:
        for k, v in CREDS.items():
            mp.setenv(k, v)
        yield


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(boot_seconds=0.1) as cl:
        s3 = boto3.client("s3", endpoint_url=cl.endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield cl


@pytest.fixture(scope="module")
def token() -> str:
    return "tok-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory, token):
    root = tmp_path_factory.mktemp("git")
    bare, first = make_repository(root, "app.git", {"app.py": "VERSION = 1\n"})
    with GitServer(root, token) as server:
        yield {"server": server, "url": server.url("app.git"), "bare": bare, "work": root / "app.git.work",
               "first": first}


@pytest.fixture()
def git_spy(tmp_path):
    """A git wrapper that records its argv (one JSON line per call), then runs the real git."""
    log = tmp_path / "git-argv.jsonl"
    wrapper = tmp_path / "git"
    wrapper.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                       f"open({str(log)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
                       "os.execvp('/usr/bin/git', ['git'] + sys.argv[1:])\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper, log


def adapter(cloud) -> AWS:
    return AWS(settings_from({"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2}))


# -- pure logic against localcloud and the git server -------------------------------------------------------
def test_wanted_reads_the_sha_from_s3_and_refuses_bad_content(cloud, git_repo):
    aws = adapter(cloud)
    c.publish(aws, BUCKET, KEY, git_repo["first"])
    assert c.wanted(aws, BUCKET, KEY) == git_repo["first"]
    with pytest.raises(ProvisionError, match=r"s3://releases/nope does not exist: record the commit"):
        c.wanted(aws, BUCKET, "nope")
    with pytest.raises(ProvisionError, match="bucket ghost does not exist"):
        c.wanted(aws, "ghost", KEY)
    boto3.client("s3", endpoint_url=cloud.endpoint, region_name="us-east-1").put_object(
        Bucket=BUCKET, Key="bad", Body=b"main\n")
    with pytest.raises(ProvisionError, match=r"does not hold a full commit SHA .* got 'main'"):
        c.wanted(aws, BUCKET, "bad")
    with pytest.raises(ProvisionInputError, match="phoenix:deploy:bucket and phoenix:deploy:key"):
        c.wanted(aws, None, KEY)


def test_deploy_needs_the_token_and_passes_it_only_through_the_environment(tmp_path, git_repo, token, git_spy):
    wrapper, argv_log = git_spy
    target = tmp_path / "app"
    before = len(git_repo["server"].requests)
    with pytest.raises(ProvisionError, match=r"deployed-commit: git fetch failed") as info:
        c.deploy(git_repo["url"], target, git_repo["first"], None, git=str(wrapper))
    assert any(status == 401 for _, _, status in git_repo["server"].requests[before:])
    with pytest.raises(ProvisionError, match="git fetch failed"):
        c.deploy(git_repo["url"], target, git_repo["first"], "wrong-" + token, git=str(wrapper))
    out = c.deploy(git_repo["url"], target, git_repo["first"], token, git=str(wrapper))
    assert out == {"old": None, "new": git_repo["first"], "fetched": True}
    assert c.head(target) == git_repo["first"] and (target / "app.py").read_text() == "VERSION = 1\n"
    argv = argv_log.read_text()
    assert "fetch" in argv and token not in argv and "Authorization" not in argv
    # nothing of the token in the checkout's git config or anywhere under it
    for path in target.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in str(info.value)
    # already there: no fetch, no token needed
    assert c.deploy(git_repo["url"], target, git_repo["first"], None)["fetched"] is False


def test_deploy_follows_a_new_sha_and_refuses_unknown_ones(tmp_path, git_repo, token):
    target = tmp_path / "app"
    c.deploy(git_repo["url"], target, git_repo["first"], token)
    second = commit_files(git_repo["work"], {"app.py": "VERSION = 2\n"}, "second")
    push(git_repo["work"], git_repo["bare"])
    out = c.deploy(git_repo["url"], target, second, token, auth_scheme="basic")
    assert out["old"] == git_repo["first"] and out["new"] == second
    assert (target / "app.py").read_text() == "VERSION = 2\n"
    unknown = "0" * 40
    with pytest.raises(ProvisionError, match=f"commit {unknown} is not in {git_repo['url']}"):
        c.deploy(git_repo["url"], target, unknown, token)
    assert c.head(target) == second  # a refused deploy leaves the checkout as it was
    with pytest.raises(ProvisionInputError, match="must not contain a user or token"):
        c.deploy(git_repo["url"].replace("http://", f"http://u:{token}@"), target, second, None)


# -- through salt-call --local: the state, test mode, the record, the failure reasons -------------------
@pytest.fixture()
def minion(tmp_path, cloud, git_repo, token):
    root = tmp_path / "minion"
    conf = root / "conf"
    conf.mkdir(parents=True)
    states = root / "states"
    states.mkdir()
    (states / "app.sls").write_text("app-at-recorded-commit:\n  deployed_commit.deployed: []\n")
    config = {"id": "deploy-test", "file_client": "local", "root_dir": str(root / "salt-root"),
              "file_roots": {"base": [str(states)]}, "pillar_roots": {"base": [str(root / "pillar")]},
              "module_dirs": [str(REPO / "_modules")], "states_dirs": [str(REPO / "_states")],
              "utils_dirs": [str(REPO / "_utils")], "log_level_logfile": "info"}
    (conf / "minion").write_text(yaml.safe_dump(config))
    (root / "pillar").mkdir()
    (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - phoenix\n")
    pillar = {"phoenix": {
        "aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
        "deploy": {"bucket": BUCKET, "key": KEY, "repository": git_repo["url"], "target": str(root / "app"),
                   "record": str(root / "deployed_commit.json"), "token_secret": "deploy_token"},
        # masterless stand-in for what the phoenix_secrets ext_pillar compiles during the window
        "secrets": {"values": {"deploy_token": token}}}}
    (root / "pillar" / "phoenix.sls").write_text(yaml.safe_dump(pillar))

    def run(*args: str, check: bool = False):
        return salt_call(conf, *args, env={**os.environ, **CREDS}, log_level="info", check=check)

    return {"run": run, "root": root, "pillar": pillar}


def _state(out):
    (ret,) = out.values()
    return ret


def test_state_deploys_the_recorded_commit_and_shows_only_commits(cloud, git_repo, minion, token):
    aws = adapter(cloud)
    c.publish(aws, BUCKET, KEY, git_repo["first"])
    rc, out, err = minion["run"]("state.apply", "app", "test=True")
    ret = _state(out)
    assert rc == 0 and ret["result"] is None and ret["changes"] == {"commit": {"old": None, "new": git_repo["first"]}}
    assert not (minion["root"] / "app").exists()
    rc, out, err = minion["run"]("state.apply", "app")
    ret = _state(out)
    assert rc == 0 and ret["result"] is True, ret
    assert ret["changes"] == {"commit": {"old": None, "new": git_repo["first"]}}
    record = json.loads((minion["root"] / "deployed_commit.json").read_text())
    assert record["commit"] == git_repo["first"] and record["source"] == f"s3://{BUCKET}/{KEY}"
    rc, out, err = minion["run"]("state.apply", "app")
    assert rc == 0 and _state(out)["changes"] == {} and "already at" in _state(out)["comment"]
    rc, out, _ = minion["run"]("deployed_commit.recorded")
    assert out["commit"] == git_repo["first"]
    # the token appears in no output, no log line, no file the runs left (apart from the test's pillar file)
    for text in (json.dumps(out), err):
        assert token not in text
    pillar_file = minion["root"] / "pillar" / "phoenix.sls"
    for path in minion["root"].rglob("*"):
        if path.is_file() and path != pillar_file:
            assert token.encode() not in path.read_bytes(), path


def test_state_failure_reasons_name_the_input(cloud, git_repo, minion):
    aws = adapter(cloud)
    boto3.client("s3", endpoint_url=cloud.endpoint, region_name="us-east-1").delete_object(Bucket=BUCKET, Key=KEY)
    rc, out, _ = minion["run"]("state.apply", "app")
    ret = _state(out)
    assert rc != 0 and ret["result"] is False
    assert f"deployed-commit: s3://{BUCKET}/{KEY} does not exist" in ret["comment"]
    c.publish(aws, BUCKET, KEY, "f" * 40)
    rc, out, _ = minion["run"]("state.apply", "app")
    assert rc != 0 and f"commit {'f' * 40} is not in" in _state(out)["comment"]
    assert not (minion["root"] / "deployed_commit.json").exists()


def test_outside_the_window_the_missing_token_is_the_reason(cloud, git_repo, minion):
    c.publish(adapter(cloud), BUCKET, KEY, git_repo["first"])
    pillar = json.loads(json.dumps(minion["pillar"]))
    pillar["phoenix"]["secrets"] = {}
    (minion["root"] / "pillar" / "phoenix.sls").write_text(yaml.safe_dump(pillar))
    rc, out, _ = minion["run"]("state.apply", "app")
    assert rc != 0 and "the secret 'deploy_token' (phoenix:deploy:token_secret) is not in this minion's pillar" \
        in _state(out)["comment"]
