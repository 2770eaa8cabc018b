"""Test harness for the provisioning loop: a real salt-master configured with the documented master config
file (conf/master.d/phoenix-lifecycle.conf), localcloud, and localcloud instances that are real salt-minions
(:class:`localcloud.salt_instance.SaltInstanceAgent`). Only paths, ports and the localcloud endpoint are
added to the file's settings."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from localcloud.testing import wait_until

from devtools import fleet
from devtools.fleet import (AMI, CONF, CREDS, LAUNCHING, TERMINATING, documented_config, instances,  # noqa: F401
                            make_group, wait_in_service)

REPO = fleet.REPO
ROOTS = Path(__file__).resolve().parent / "lifecycle_roots"
# _modules, _states, _utils, reactor as symlinks: the whole checkout in file_roots would list .venv and .git too
LOADER_ROOTS = Path(__file__).resolve().parent / "loader_roots"
PILLAR = Path(__file__).resolve().parent / "lifecycle_pillar"


def master_overrides(endpoint: str, queue_url: str, certificate: Path, pillar_root: Path,
                     lifecycle: dict[str, Any] | None = None, extra_roots: list[str] | None = None) -> dict[str, Any]:
    """The documented config plus what only a test knows (endpoint, queue, certificate, paths), with the
    test roots (lifecycle_roots) in file_roots."""
    return fleet.master_overrides(endpoint, queue_url, certificate, pillar_root, lifecycle=lifecycle,
                                  extra_roots=[str(ROOTS), *(extra_roots or [])], loader_root=LOADER_ROOTS)


def pillar_root(tmp: Path) -> Path:
    """A writable copy of the test pillar (tests switch lifecycle_test:mode in it)."""
    root = tmp / "pillar"
    shutil.copytree(PILLAR, root)
    # phoenix:webapp as a shared test machine needs it (the instance side's test pillar)
    shutil.copy(Path(__file__).resolve().parent / "instance_roots" / "pillar" / "webapp.sls", root / "webapp.sls")
    return root


def set_mode(root: Path, mode: str, **extra: Any) -> None:
    (root / "lifecycle_test.sls").write_text(yaml.safe_dump({"lifecycle_test": {"mode": mode, **extra}}))


def events(event_listener, master_id: str, pattern: str, after: float) -> list[Any]:
    return sorted(event_listener.get_events([(master_id, pattern)], after_time=after), key=lambda e: e.stamp)


def wait_event(event_listener, master_id: str, pattern: str, after: float, timeout: float = 90,
               where=lambda e: True) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(event_listener, master_id, pattern, after) if where(e)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no event {pattern} within {timeout}s")


def _keys(salt_master, bucket: str) -> list[str]:
    """Minion ids in one of Salt's key buckets (the master's pki_dir, Salt 3008's localfs_key driver)."""
    folder = Path(salt_master.config["pki_dir"]) / bucket
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def accepted_keys(salt_master) -> list[str]:
    return _keys(salt_master, "minions")


def pending_keys(salt_master) -> list[str]:
    return _keys(salt_master, "minions_pre")


def http_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def rogue_minion(agent, minion_id: str, document: str, signature: str, name: str | None = None):
    """A real salt-minion that claims ``minion_id`` with the given identity grains and a key of its own
    (what an attacker on the network can run). Returns its process; the caller stops it."""
    import os
    import subprocess
    import sys

    from localcloud.salt_instance import Instance

    import tempfile

    root = agent.base_dir / f"rogue-{name or minion_id}"
    inst = Instance(instance_id=minion_id, root=root, private_ip="127.0.0.1",
                    sock_dir=Path(tempfile.mkdtemp(prefix="lc-rogue-")))
    inst.conf_dir.mkdir(parents=True, exist_ok=True)
    config = agent._config(inst, document, signature)
    (inst.conf_dir / "minion").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-c", "import salt.scripts; salt.scripts.salt_minion()",
                             "--config-dir", str(inst.conf_dir), "--log-level", "quiet"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ), start_new_session=True)
    proc.sock_dir = inst.sock_dir  # type: ignore[attr-defined]  # the caller removes it after stopping
    return proc


def settled(ledger, instance_id: str, transition: str = LAUNCHING, timeout: float = 30):
    """The instance's latest action once it is final (AWS may report InService a moment before the
    orchestration has written CONTINUE's outcome to the ledger)."""
    def final():
        action = ledger.latest(instance_id, transition)
        return action if action is not None and action.state not in ("in_flight", "completing") else None

    return wait_until(final, timeout=timeout, interval=0.2, message=f"{instance_id}'s action to settle")
