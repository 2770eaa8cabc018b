"""Pure logic of provisioning part 2 (no daemons): secret references and the window decision, host keys and
the inventory files, update commands, commit SHAs."""

from __future__ import annotations

import base64
import struct
from types import SimpleNamespace

import pytest

from phoenix.aws import PhoenixAWSError
from phoenix.provision import commit, inventory, osupdate, secrets
from phoenix.provision.errors import ProvisionError, ProvisionInputError

IID = "i-0123456789abcdef0"


class Ledger:
    def __init__(self, action=None):
        self.action = action

    def in_flight(self, instance_id, transition=secrets.LAUNCHING):
        return self.action if self.action and self.action.instance_id == instance_id else None


class AWS:
    """Answers DescribeAutoScalingInstances and GetParameters from tables (the window logic only)."""

    def __init__(self, state="Pending:Wait", group="web", params=None):
        self.state, self.group, self.params, self.calls = state, group, params or {}, []

    def call(self, service, method, resource=None, _sensitive=False, **kw):
        self.calls.append((method, _sensitive))
        if method == "describe_auto_scaling_instances":
            if self.state is None:
                return {"AutoScalingInstances": []}
            return {"AutoScalingInstances": [{"LifecycleState": self.state, "AutoScalingGroupName": self.group}]}
        if method == "get_parameters":
            found = [{"Name": n, "Value": v[0], "Type": v[1]} for n, v in self.params.items() if n in kw["Names"]]
            return {"Parameters": found, "InvalidParameters": [n for n in kw["Names"] if n not in self.params]}
        raise AssertionError(method)


PILLAR = {"phoenix": {"secrets": {"ssm": {"token": "/phoenix/web/token"}}}}
ACTION = SimpleNamespace(instance_id=IID, group="web")


def test_window_needs_the_ledger_and_aws():
    aws = AWS(params={"/phoenix/web/token": ("s3cr3t", "SecureString")})
    notes = []
    out = secrets.compile_for(IID, PILLAR, Ledger(ACTION), aws, notify=lambda o, d: notes.append((o, d)))
    assert out == {"phoenix": {"secrets": {"values": {"token": "s3cr3t"}}}}
    assert ("get_parameters", True) in aws.calls and "s3cr3t" not in repr(notes)
    assert secrets.compile_for(IID, PILLAR, Ledger(None), aws) == {}
    assert secrets.compile_for(IID, PILLAR, Ledger(ACTION), AWS(state="InService")) == {}
    assert secrets.compile_for(IID, PILLAR, Ledger(ACTION), AWS(group="other")) == {}
    assert secrets.compile_for(IID, PILLAR, Ledger(ACTION), AWS(state=None)) == {}
    assert secrets.compile_for("web-1", PILLAR, Ledger(ACTION), aws) == {}
    assert secrets.window(IID, Ledger(ACTION), AWS(state="InService")).reason == "AWS says InService, not Pending:Wait"


def test_references_are_checked_and_plain_strings_refused():
    with pytest.raises(ProvisionInputError, match="outside /phoenix/"):
        secrets.references({"phoenix": {"secrets": {"ssm": {"t": "/other/t"}}}})
    with pytest.raises(ProvisionError, match="is a String, not a SecureString"):
        secrets.fetch(AWS(params={"/phoenix/web/token": ("x", "String")}), {"token": "/phoenix/web/token"})
    with pytest.raises(ProvisionError, match="SSM parameters not found: /phoenix/web/token"):
        secrets.fetch(AWS(), {"token": "/phoenix/web/token"})
    assert secrets.references({}) == {}


def _key(kind: str = "ssh-ed25519") -> str:
    blob = struct.pack(">I", len(kind)) + kind.encode() + struct.pack(">I", 32) + b"k" * 32
    return base64.b64encode(blob).decode()


def test_host_keys_are_validated_and_the_files_rebuilt(tmp_path):
    good = _key()
    assert inventory.parse_public_key(f"ssh-ed25519 {good} root@x") == {"type": "ssh-ed25519", "key": good}
    assert inventory.parse_public_key(f"ssh-rsa {good}") is None          # blob names another type
    assert inventory.parse_public_key("ssh-ed25519 not-base64!") is None
    live = {IID: {"address": "127.1.2.3", "state": "InService"}, "i-00000000000000001": {"address": "127.1.2.4"}}
    out = inventory.refresh("web", live, {IID: [{"type": "ssh-ed25519", "key": good}]}, tmp_path)
    assert out["hosts"] == [IID] and out["without_keys"] == ["i-00000000000000001"]
    text = (tmp_path / "web.known_hosts").read_text()
    assert f"127.1.2.3 ssh-ed25519 {good} {IID}" in text
    # no answer this time, same address: the keys reported earlier stay; gone from AWS: removed
    again = inventory.refresh("web", {IID: live[IID]}, {}, tmp_path)
    assert again["hosts"] == [IID] and again["changed"] is False
    gone = inventory.refresh("web", {}, {}, tmp_path)
    assert gone["removed"] == [IID] and IID not in (tmp_path / "web.known_hosts").read_text()
    with pytest.raises(ProvisionInputError):
        inventory.paths(tmp_path, "../etc")


def test_commands_shas_and_urls():
    assert osupdate.expand([["x", "{root_dir}/run", "{id}"]], "/r/", "i-1") == [["x", "/r/run", "i-1"]]
    with pytest.raises(ProvisionInputError, match="list of arguments"):
        osupdate.commands(["apt-get update"])
    assert commit.validate_sha("A" * 40 + "\n", "x") == "a" * 40
    with pytest.raises(ProvisionError, match="does not hold a full commit SHA"):
        commit.validate_sha("abc123", "s3://b/k")
    env = commit.git_env("Bearer t0k", base={"GIT_TRACE": "1", "PATH": "/bin"})
    assert "GIT_TRACE" not in env and env["GIT_CONFIG_VALUE_2"] == "Authorization: Bearer t0k"
    with pytest.raises(ProvisionInputError, match="must not contain a user or token"):
        commit.check_repository("https://u:p@example.com/r.git")
