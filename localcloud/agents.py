"""The instance-agent hook: something to start when the group launches an instance and stop when it
terminates it (the Salt session plugs in a salt-minion whose id is the instance id)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class InstanceAgent(Protocol):
    """Started when an instance is launched, stopped when it is terminated.

    An agent may also define ``attach(cloud)``: :class:`~localcloud.cloud.LocalCloud` calls it once it
    serves (before any launch), so the agent can reach the cloud's endpoint, the instance's private IP
    (``cloud.private_ip(id)``) and its metadata service (``cloud.imds_url(id)``); and ``reboot(instance_id)``,
    called for EC2 ``RebootInstances`` (restart the instance's processes).
    """

    def start(self, instance_id: str) -> None:
        """Start the agent for ``instance_id`` (called once, off the request path)."""

    def stop(self, instance_id: str) -> None:
        """Stop the agent for ``instance_id`` (called once; also for every instance at shutdown)."""


class SubprocessAgent:
    """A trivial agent: one small real Python process per instance, killed on stop.

    Handy for tests and demos; ``command`` gets the instance id appended.
    """

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-c", "import sys, time; time.sleep(3600)"]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, instance_id: str) -> None:
        """Spawn the process for ``instance_id``."""
        proc = subprocess.Popen([*self.command, instance_id], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with self._lock:
            self._procs[instance_id] = proc

    def stop(self, instance_id: str) -> None:
        """Terminate (then kill) the process for ``instance_id``."""
        with self._lock:
            proc = self._procs.pop(instance_id, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def pids(self) -> dict[str, int]:
        """Running processes by instance id."""
        with self._lock:
            return {iid: p.pid for iid, p in self._procs.items() if p.poll() is None}


class AgentRunner:
    """Calls an agent's start/stop off the request path, one call at a time per instance, in order."""

    def __init__(self, agent: InstanceAgent | None) -> None:
        self.agent = agent
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="localcloud-agent")
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._pending: list[Future[None]] = []
        self._last: dict[str, Future[None]] = {}

    def started(self, instance_id: str) -> None:
        """The group launched ``instance_id``."""
        if self.agent is None:
            return
        with self._lock:
            if instance_id in self._running:
                return
            self._running.add(instance_id)
            self._submit("start", instance_id)

    def stopped(self, instance_id: str) -> None:
        """The group terminated ``instance_id``."""
        if self.agent is None:
            return
        with self._lock:
            if instance_id not in self._running:
                return
            self._running.discard(instance_id)
            self._submit("stop", instance_id)

    def rebooted(self, instance_id: str) -> bool:
        """Reboot ``instance_id``'s agent (``agent.reboot``) after its pending calls; False when the agent
        has no ``reboot`` or the instance's agent is not running."""
        if self.agent is None or not callable(getattr(self.agent, "reboot", None)):
            return False
        with self._lock:
            if instance_id not in self._running:
                return False
            self._submit("reboot", instance_id)
        return True

    def wait(self, instance_id: str, timeout: float | None = None) -> None:
        """Block until every call queued so far for ``instance_id`` has finished."""
        with self._lock:
            last = self._last.get(instance_id)
        if last is not None:
            last.result(timeout)

    def running(self) -> set[str]:
        """Instances whose agent was started and not yet stopped."""
        with self._lock:
            return set(self._running)

    def _submit(self, what: str, instance_id: str) -> None:
        """Queue a call that runs after the previous call for the same instance (lock held)."""
        previous = self._last.get(instance_id)
        future = self._pool.submit(self._call, what, instance_id, previous)
        self._last[instance_id] = future
        self._pending = [f for f in self._pending if not f.done()] + [future]

    def _call(self, what: str, instance_id: str, previous: Future[None] | None) -> None:
        if previous is not None:
            previous.result()
        try:
            getattr(self.agent, what)(instance_id)
        except Exception:  # an agent failure must not break the simulator
            log.exception("instance agent %s(%s) failed", what, instance_id)

    def shutdown(self) -> None:
        """Stop every running agent and wait for all calls to finish."""
        for instance_id in sorted(self.running()):
            self.stopped(instance_id)
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.result()
        self._pool.shutdown(wait=True)
