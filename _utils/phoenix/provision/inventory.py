"""Inventory without trust on first use: a salt-ssh roster and an SSH ``known_hosts`` per group.

Built from two sources only:

* **AWS**: the group's live instances (``DescribeAutoScalingGroups``) and their private addresses
  (``DescribeInstances``);
* **Salt**: each instance's SSH host *public* keys as its own minion reports them (``inventory.host_keys``),
  over the authenticated request channel: the master accepts a job return only with the minion's token,
  signed by that minion's accepted key, and for the same id (Salt 3008 request message version 3).

Never from an SSH connection (no ``ssh-keyscan``, no ``StrictHostKeyChecking=accept-new``): the roster
sets ``StrictHostKeyChecking=yes`` against the generated ``known_hosts``. Each refresh rewrites both files
from scratch (atomically), so instances that left the group (terminated, ``Terminating:*``) disappear. A
live instance whose minion does not answer keeps the keys it reported earlier while its address is the same.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from phoenix.provision.errors import ProvisionError, ProvisionInputError

STEP = "inventory"
LIVE_STATES = ("Pending:Wait", "Pending:Proceed", "InService", "Standby", "EnteringStandby")
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def parse_public_key(line: str) -> dict[str, str] | None:
    """``{"type", "key"}`` of one OpenSSH public key line (comment dropped), None when it is not one."""
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        if blob[4:4 + length].decode() != parts[0]:
            return None
    except (ValueError, struct.error, UnicodeDecodeError):
        return None
    return {"type": parts[0], "key": parts[1]}


def host_keys(keydir: Any) -> list[dict[str, str]]:
    """The host public keys in ``keydir`` (``ssh_host_*_key.pub``); private key files are never read."""
    found = []
    for path in sorted(Path(str(keydir)).glob("ssh_host_*_key.pub")):
        parsed = parse_public_key(path.read_text(errors="replace"))
        if parsed:
            found.append(parsed)
    return found


def members(aws: Any, group: str) -> dict[str, dict[str, Any]]:
    """``{instance id: {address, state}}`` for the group's live instances, addresses from EC2."""
    groups = aws.call("autoscaling", "describe_auto_scaling_groups", group,
                      AutoScalingGroupNames=[group]).get("AutoScalingGroups", [])
    if not groups:
        raise ProvisionError(STEP, f"Auto Scaling group {group} does not exist")
    live = {i["InstanceId"]: i["LifecycleState"] for i in groups[0].get("Instances", [])
            if i.get("LifecycleState") in LIVE_STATES}
    out: dict[str, dict[str, Any]] = {}
    ids = sorted(live)
    for start in range(0, len(ids), 100):
        batch = ids[start:start + 100]
        reservations = aws.call("ec2", "describe_instances", group, InstanceIds=batch).get("Reservations", [])
        for res in reservations:
            for inst in res.get("Instances", []):
                if inst.get("State", {}).get("Name") in ("shutting-down", "terminated", "stopped"):
                    continue
                address = inst.get("PrivateIpAddress")
                if address:
                    out[inst["InstanceId"]] = {"address": address, "state": live[inst["InstanceId"]]}
    return out


def host_field(address: str, port: int) -> str:
    return address if int(port) == 22 else f"[{address}]:{int(port)}"


def render_known_hosts(group: str, entries: Mapping[str, Mapping[str, Any]], port: int = 22) -> str:
    """``known_hosts`` text: one line per key, ``<address> <type> <key> <instance id>``, sorted."""
    lines = [f"# Phoenix inventory for Auto Scaling group {group}: host keys reported over Salt, addresses "
             "from AWS. Rewritten on every refresh; do not edit."]
    for instance_id in sorted(entries):
        entry = entries[instance_id]
        for key in sorted(entry["keys"], key=lambda k: (k["type"], k["key"])):
            lines.append(f"{host_field(entry['address'], port)} {key['type']} {key['key']} {instance_id}")
    return "\n".join(lines) + "\n"


def parse_known_hosts(text: str, port: int = 22) -> dict[str, dict[str, Any]]:
    """The entries of a file written by :func:`render_known_hosts` (by the instance id in the comment)."""
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or line.startswith("#") or not INSTANCE_ID.match(parts[3]):
            continue
        host = parts[0]
        address = host[1:].split("]:")[0] if host.startswith("[") else host
        entry = out.setdefault(parts[3], {"address": address, "keys": []})
        entry["keys"].append({"type": parts[1], "key": parts[2]})
    return out


def render_roster(entries: Mapping[str, Mapping[str, Any]], known_hosts: str, user: str, port: int = 22,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A salt-ssh roster: every instance with keys, pinned to ``known_hosts`` with strict checking."""
    roster: dict[str, Any] = {}
    for instance_id in sorted(entries):
        roster[instance_id] = {
            "host": entries[instance_id]["address"], "user": user, "port": int(port),
            "ssh_options": [f"UserKnownHostsFile={known_hosts}", "StrictHostKeyChecking=yes",
                            "GlobalKnownHostsFile=/dev/null"],
            **dict(extra or {}),
        }
    return roster


def write_atomic(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` through a temp file and ``os.replace``; False when it was already equal."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def paths(directory: Any, group: str) -> tuple[Path, Path]:
    """``(roster, known_hosts)`` for ``group`` under ``directory``."""
    if not directory:
        raise ProvisionInputError(STEP, "phoenix:inventory:dir is not set: name the directory for the roster "
                                        "and known_hosts files (e.g. /etc/salt/phoenix/inventory)")
    if not SAFE_NAME.match(group):
        raise ProvisionInputError(STEP, f"group name {group!r} cannot be used as a file name")
    base = Path(str(directory))
    return base / f"{group}.roster", base / f"{group}.known_hosts"


def build(group: str, live: Mapping[str, Mapping[str, Any]], reported: Mapping[str, Iterable[Mapping[str, str]] | None],
          previous: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``(entries, without_keys)``: keys reported now, else the earlier ones for the same address."""
    entries: dict[str, dict[str, Any]] = {}
    without: list[str] = []
    for instance_id, info in sorted(live.items()):
        keys = [k for k in (parse_public_key(f"{k.get('type')} {k.get('key')}") for k in (reported.get(instance_id) or [])
                            if isinstance(k, Mapping)) if k]
        if not keys and instance_id in previous and previous[instance_id]["address"] == info["address"]:
            keys = list(previous[instance_id]["keys"])
        if keys:
            entries[instance_id] = {"address": info["address"], "keys": keys}
        else:
            without.append(instance_id)
    return entries, without


def refresh(group: str, live: Mapping[str, Mapping[str, Any]], reported: Mapping[str, Any], directory: Any, *,
            user: str = "root", port: int = 22, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite the group's roster and known_hosts; returns what changed."""
    import yaml

    roster_path, known_path = paths(directory, group)
    try:
        previous = parse_known_hosts(known_path.read_text(), port)
    except OSError:
        previous = {}
    entries, without = build(group, live, reported, previous)
    known_changed = write_atomic(known_path, render_known_hosts(group, entries, port))
    roster = render_roster(entries, str(known_path), user, port, extra)
    roster_changed = write_atomic(roster_path, yaml.safe_dump(roster, default_flow_style=False, sort_keys=True))
    return {"group": group, "roster": str(roster_path), "known_hosts": str(known_path),
            "hosts": sorted(entries), "added": sorted(set(entries) - set(previous)),
            "removed": sorted(set(previous) - set(entries)), "without_keys": without,
            "changed": known_changed or roster_changed}
