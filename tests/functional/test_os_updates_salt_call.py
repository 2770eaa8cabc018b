"""os_updates through salt-call --local with the harmless stand-in: reboot flag, test mode, failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from devtools.saltcall import salt_call, write_minion_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def minion(tmp_path):
    conf = write_minion_config(tmp_path, REPO)

    def configure(*flags: str) -> None:
        pillar = {"phoenix": {"os_updates": {
            "commands": [[sys.executable, "-m", "devtools.fake_upgrade", "{root_dir}/run/reboot-required", *flags]],
            "reboot_flag": "run/reboot-required",
            "reboot_command": [sys.executable, "-c", "open('{root_dir}/rebooted', 'w').write('{id}')"]}}}
        (tmp_path / "pillar" / "top.sls").write_text("base:\n  '*':\n    - phoenix\n")
        (tmp_path / "pillar" / "phoenix.sls").write_text(yaml.safe_dump(pillar))

    return {"conf": conf, "root": tmp_path / "salt-root", "configure": configure}


def _one(out):
    (ret,) = out.values()
    return ret


def test_updates_report_reboot_required_and_reboot_runs_the_configured_command(minion):
    minion["configure"]()
    rc, out, err = salt_call(minion["conf"], "state.apply", "os_updates", check=True)
    ret = _one(out)
    assert ret["result"] is True and ret["changes"]["reboot_required"] is False, ret
    minion["configure"]("--reboot")
    rc, out, err = salt_call(minion["conf"], "state.apply", "os_updates", "test=True")
    ret = _one(out)
    assert rc == 0 and ret["result"] is None and "Would run 1 update command(s)" in ret["comment"]
    assert not (minion["root"] / "run" / "reboot-required").exists()
    rc, out, err = salt_call(minion["conf"], "state.apply", "os_updates", check=True)
    ret = _one(out)
    assert ret["changes"]["reboot_required"] is True and ret["changes"]["reboot_packages"] == ["linux-image-amd64"]
    assert "a reboot is required" in ret["comment"]
    rc, out, _ = salt_call(minion["conf"], "os_updates.reboot_required", check=True)
    assert out["required"] is True and out["flag"] == str(minion["root"] / "run" / "reboot-required")
    rc, out, _ = salt_call(minion["conf"], "os_updates.reboot", check=True)
    assert out["rebooting"] is True
    from localcloud.testing import wait_until
    wait_until(lambda: (minion["root"] / "rebooted").exists(), message="the reboot command ran")


def test_a_failing_upgrade_fails_the_state_with_the_reason(minion):
    minion["configure"]("--fail")
    rc, out, _ = salt_call(minion["conf"], "state.apply", "os_updates")
    ret = _one(out)
    assert rc != 0 and ret["result"] is False
    assert "os-updates:" in ret["comment"] and "failed (100): E: Sub-process /usr/bin/dpkg returned an error" \
        in ret["comment"]


def test_production_defaults_are_the_full_and_security_upgrades_in_the_foreground(minion):
    """Without pillar the state runs Debian's full upgrade and the security origins (test=True: nothing
    runs), and looks for Debian's reboot flag."""
    (minion["root"].parent / "pillar" / "top.sls").write_text("base: {}\n")
    rc, out, _ = salt_call(minion["conf"], "os_updates.planned", check=True)
    assert out == ["apt-get update",
                   "apt-get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold dist-upgrade",
                   "unattended-upgrade -v"]
    rc, out, _ = salt_call(minion["conf"], "state.apply", "os_updates", "test=True")
    ret = _one(out)
    assert rc == 0 and ret["result"] is None and "Would run 3 update command(s)" in ret["comment"], ret
    rc, out, _ = salt_call(minion["conf"], "os_updates.reboot_required", check=True)
    assert out["flag"] == "/var/run/reboot-required"
