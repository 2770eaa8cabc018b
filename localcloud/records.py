"""Plain data localcloud keeps beside moto: instance records, capacity timelines, API call counts."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Lifecycle states an instance can be in while it still counts towards the group's capacity.
ACTIVE_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
TERMINATING_STATES = frozenset({"Terminating", "Terminating:Wait", "Terminating:Proceed"})


@dataclass
class InstanceRecord:
    """What localcloud knows about one instance an Auto Scaling group launched."""

    instance_id: str
    group: str
    seq: int
    launched_at: float
    launch_version: str
    private_ip: str | None = None  # its own loopback address, reported as PrivateIpAddress
    state: str = "Pending"
    boot_due: float | None = None
    transition: str | None = None  # "launching" / "terminating" while a lifecycle action is open
    tokens: dict[str, str] = field(default_factory=dict)  # hook name -> LifecycleActionToken
    deadlines: dict[str, float] = field(default_factory=dict)  # hook name -> heartbeat deadline
    decrement: bool = False
    in_service_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None  # "abandoned", "terminated", "replaced", "removed", ...

    @property
    def alive(self) -> bool:
        """Still part of the group (not gone)."""
        return self.state != "Terminated"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "instance_id": self.instance_id,
            "group": self.group,
            "state": self.state,
            "launched_at": self.launched_at,
            "launch_version": self.launch_version,
            "private_ip": self.private_ip,
            "in_service_at": self.in_service_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
        }


class Timeline:
    """Per-group capacity history: one entry each time the in-service count or desired changes."""

    def __init__(self) -> None:
        self._entries: dict[str, list[dict[str, Any]]] = {}

    def note(self, group: str, when: float, in_service: int, total: int, desired: int | None,
             event: str) -> None:
        """Record the group's counts if they differ from the last entry."""
        entries = self._entries.setdefault(group, [])
        if entries:
            last = entries[-1]
            if (last["in_service"], last["instances"], last["desired"]) == (in_service, total, desired):
                return
        entries.append({"time": when, "in_service": in_service, "instances": total,
                        "desired": desired, "event": event})

    def get(self, group: str) -> list[dict[str, Any]]:
        """A copy of the entries for ``group`` (empty when unknown)."""
        return [dict(e) for e in self._entries.get(group, [])]

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()


class ApiCounter:
    """Counts API calls by ``service:Action`` (only calls from clients, not localcloud's own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str) -> None:
        """Count one call."""
        with self._lock:
            self._counts[key] += 1

    def snapshot(self, reset: bool = False) -> dict[str, int]:
        """Counts so far; optionally start again from zero."""
        with self._lock:
            data = dict(self._counts)
            if reset:
                self._counts.clear()
            return data
