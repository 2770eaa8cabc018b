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

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf" / "master.d" / "phoenix-lifecycle.conf"
ROOTS = Path(__file__).resolve().parent / "lifecycle_roots"
# _modules, _states, _utils, reactor as symlinks: the whole checkout in file_roots would list .venv and .git too
LOADER_ROOTS = Path(__file__).resolve().parent / "loader_roots"
PILLAR = Path(__file__).resolve().parent / "lifecycle_pillar"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
AMI = "ami-12c6146b"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def documented_config() -> dict[str, Any]:
    """The master config file exactly as shipped."""
    return yaml.safe_load(CONF.read_text())


def master_overrides(endpoint: str, queue_url: str, certificate: Path, pillar_root: Path,
                     lifecycle: dict[str, Any] | None = None, extra_roots: list[str] | None = None) -> dict[str, Any]:
    """The documented config plus what only a test knows (endpoint, queue, certificate, paths)."""
    config = documented_config()
    phoenix = config.pop("phoenix")
    phoenix["aws"] = {"endpoint_url": endpoint, "region": "us-east-1", "max_attempts": 2}
    phoenix["lifecycle"].update({"queue_url": queue_url, "groups": ["lc-*"], "identity_certificate": str(certificate),
                                 "wait_seconds": 1, "key_timeout": 60, "highstate_timeout": 120,
                                 "health_timeout": 15, "health": {"port": 8080}})
    phoenix["lifecycle"].update(lifecycle or {})
    # rebuild.cycle's instance refresh on a group of 3: keep 2 in service, replace one at a time
    phoenix["rebuild"] = {"min_healthy_percentage": 60}
    config.update({
        "phoenix": phoenix,
        "interface": "127.0.0.1",
        "log_level_logfile": "info",
        "file_roots": {"base": [str(REPO / "salt"), str(LOADER_ROOTS), str(ROOTS), *(extra_roots or [])]},
        "pillar_roots": {"base": [str(pillar_root)]},
        "runner_dirs": [str(REPO / "_runners")],
        "engines_dirs": [str(REPO / "_engines")],
        "module_dirs": [str(REPO / "_modules")],
        "states_dirs": [str(REPO / "_states")],
        "utils_dirs": [str(REPO / "_utils")],
    })
    return config


def pillar_root(tmp: Path) -> Path:
    """A writable copy of the test pillar (tests switch lifecycle_test:mode in it)."""
    root = tmp / "pillar"
    shutil.copytree(PILLAR, root)
    # phoenix:webapp as a shared test machine needs it (the instance side's test pillar)
    shutil.copy(Path(__file__).resolve().parent / "instance_roots" / "pillar" / "webapp.sls", root / "webapp.sls")
    return root


def set_mode(root: Path, mode: str, **extra: Any) -> None:
    (root / "lifecycle_test.sls").write_text(yaml.safe_dump({"lifecycle_test": {"mode": mode, **extra}}))


def make_group(aws: dict[str, Any], name: str, queue_arn: str, desired: int = 1, heartbeat: int = 300,
               terminating: bool = True, max_size: int = 6) -> None:
    """An Auto Scaling group with Phoenix's hooks (LAUNCHING, DefaultResult ABANDON; TERMINATING), then
    ``desired`` instances (hooks apply to instances launched after them)."""
    aws["ec2"].create_launch_template(LaunchTemplateName=f"{name}-lt",
                                      LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=max_size, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"}, AvailabilityZones=["us-east-1a"])
    hooks = [("provision", LAUNCHING, "ABANDON")] + ([("retire", TERMINATING, "CONTINUE")] if terminating else [])
    for hook, transition, default in hooks:
        aws["autoscaling"].put_lifecycle_hook(
            AutoScalingGroupName=name, LifecycleHookName=hook, LifecycleTransition=transition,
            NotificationTargetARN=queue_arn, RoleARN="arn:aws:iam::123456789012:role/hooks",
            HeartbeatTimeout=heartbeat, DefaultResult=default)
    if desired:
        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired)


def instances(aws: dict[str, Any], group: str) -> dict[str, str]:
    """``{instance id: LifecycleState}`` of the group."""
    found = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {i["InstanceId"]: i["LifecycleState"] for i in found[0]["Instances"]} if found else {}


def wait_in_service(aws: dict[str, Any], group: str, count: int, timeout: float = 120) -> dict[str, str]:
    def done() -> dict[str, str] | None:
        now = instances(aws, group)
        ready = {i: s for i, s in now.items() if s == "InService"}
        return ready if len(ready) >= count else None

    return wait_until(done, timeout=timeout, interval=0.3, message=f"{count} InService in {group}")


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
