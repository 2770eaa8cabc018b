"""LocalCloud: moto plus localcloud's simulators behind one endpoint on 127.0.0.1."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import BaseWSGIServer, make_server

from localcloud import motoaccess
from localcloud.addresses import AddressPool
from localcloud.agents import AgentRunner, InstanceAgent
from localcloud.clock import Clock
from localcloud.control import Control
from localcloud.frontend import Frontend, Interceptor
from localcloud.identity import IdentitySigner
from localcloud.lifecycle import Fleet
from localcloud.records import ApiCounter, Timeline

log = logging.getLogger(__name__)

ROLLING_ABANDON = ("replace", "fail")
_ACTIVE: list["LocalCloud"] = []  # moto's state is process-wide: one running LocalCloud at a time


class QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without a log line per request, dating responses by the virtual clock
    (clients measure instance age against the HTTP ``Date`` header, as they would against AWS)."""

    clock: Clock | None = None

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:  # noqa: D102
        return

    def date_time_string(self, timestamp: float | None = None) -> str:  # noqa: D102
        if timestamp is None and self.clock is not None:
            timestamp = self.clock.now()
        return email.utils.formatdate(timestamp, usegmt=True)


class OperationStopped(Exception):
    """Raised inside a background operation when the cloud is stopping or resetting."""


class LocalCloud:
    """A local stand-in for one AWS region, for tests and demos (never production).

    ``with LocalCloud(boot_seconds=0.2, agent=my_agent) as cloud:`` starts it; point boto3 at
    ``cloud.endpoint`` (any credentials, region ``cloud.region``).
    """

    def __init__(self, boot_seconds: float = 1.0, agent: InstanceAgent | None = None,
                 clock: Clock | None = None, clock_rate: float = 1.0, region: str = "us-east-1",
                 port: int = 0, tick_seconds: float = 0.02, rolling_abandon: str = "replace",
                 duplicate_notifications: float = 0.0) -> None:
        if rolling_abandon not in ROLLING_ABANDON:
            raise ValueError(f"rolling_abandon must be one of {', '.join(ROLLING_ABANDON)}, got {rolling_abandon!r}")
        if not 0.0 <= duplicate_notifications <= 1.0:
            raise ValueError(f"duplicate_notifications is a probability (0..1), got {duplicate_notifications!r}")
        self.region = region
        #: what an abandoned launch does to a rolling update without WaitOnResourceSignals: "replace" (the
        #: group launches another instance, the update goes on) or "fail" (the update fails and rolls back)
        self.rolling_abandon = rolling_abandon
        #: probability that a lifecycle notification is delivered twice (SQS/Auto Scaling: at least once)
        self.duplicate_notifications = duplicate_notifications
        self.port = port
        self.tick_seconds = tick_seconds
        self.clock = clock or Clock(rate=clock_rate)
        self.lock = threading.RLock()
        self.calls = ApiCounter()
        self._timeline = Timeline()
        self.agents = AgentRunner(agent)
        self.addresses = AddressPool()  # a random 127.X.0.0/16, held until stop()
        self.identity = IdentitySigner(region)  # a fresh test key: signs instance identity documents
        self.fleet = Fleet(self.clock, region, boot_seconds, self.agents, self._timeline,
                           addresses=self.addresses, identity=self.identity)
        self.fleet.duplicate_notifications = duplicate_notifications
        self.control = Control(self)
        self.interceptors: dict[str, Interceptor] = {}
        self.tick_hooks: list[Callable[[], None]] = []
        self.signals: dict[tuple[str, str], dict[str, str]] = {}  # (stack, logical id) -> {unique id: status}
        self.stack_updates: dict[str, Any] = {}  # stack id -> the latest localcloud-run StackUpdate
        self._server: BaseWSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._generation = 0
        self.clock.subscribe(self._wake)
        self._install_features()

    def _install_features(self) -> None:
        from localcloud import asg_api, cfn_api, ec2_api, loadbalancing, refresh

        self.interceptors.update(asg_api.interceptors(self))
        self.interceptors.update(ec2_api.interceptors(self))
        self.interceptors.update(cfn_api.interceptors(self))
        self.refresh = refresh.Refresher(self)
        self.interceptors.update(self.refresh.interceptors())
        self.tick_hooks.append(self.refresh.tick)
        self.balancer = loadbalancing.Balancer(self)
        self.fleet.balancer = self.balancer
        self.interceptors.update(self.balancer.interceptors())
        self.tick_hooks.append(self.balancer.tick)

    # ------------------------------------------------------------------ lifecycle of the server
    def start(self) -> "LocalCloud":
        """Reset moto, bind 127.0.0.1 and start serving and ticking."""
        if _ACTIVE:
            raise RuntimeError("another LocalCloud is running in this process (moto state is process-wide)")
        _ACTIVE.append(self)
        motoaccess.register_cfn_yaml_tags()
        motoaccess.reset_all()
        self.balancer.install()
        handler = type("LocalCloudRequestHandler", (QuietRequestHandler,), {"clock": self.clock})
        self._server = make_server("127.0.0.1", self.port, Frontend(self), threaded=True, request_handler=handler)
        self.port = self._server.server_port
        self._spawn_daemon("localcloud-http", lambda: self._server.serve_forever(poll_interval=0.05))
        self._spawn_daemon("localcloud-tick", self._tick_loop)
        attach = getattr(self.agents.agent, "attach", None)
        if callable(attach):  # agents that need the endpoint (IMDS) learn it before the first launch
            attach(self)
        log.info("localcloud serving %s (instances in %s)", self.endpoint, self.addresses.network)
        return self

    def stop(self) -> None:
        """Stop background work, the HTTP server and every instance agent; clear moto."""
        self._stopping.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self.agents.shutdown()
        with self.lock:
            motoaccess.reset_all()
        self.balancer.uninstall()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self._server = None
        self.addresses.close()

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The one ``endpoint_url`` for every service."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def identity_certificate_pem(self) -> str:
        """The certificate (PEM) that verifies every instance identity document this cloud signs
        (in production: AWS's per-region RSA certificate)."""
        return self.identity.certificate_pem

    def imds_url(self, instance_id: str) -> str:
        """The base of ``instance_id``'s own metadata service (``<this>/latest/dynamic/...``), the
        stand-in for ``http://169.254.169.254`` as seen from that instance."""
        return f"{self.endpoint}/_localcloud/imds/{instance_id}"

    def reboot(self, instance_id: str) -> bool:
        """Reboot a live instance's agent (restart its processes), off the request path, in order with its
        start and stop; False when the instance is not alive or the agent cannot reboot. EC2's
        ``RebootInstances`` and ``POST /_localcloud/instances/<id>/reboot`` do the same."""
        with self.lock:
            rec = self.fleet.records.get(instance_id)
            if rec is None or not rec.alive:
                return False
            return self.agents.rebooted(instance_id)

    def private_ip(self, instance_id: str) -> str | None:
        """The instance's private IP (its own loopback address), None for an unknown instance."""
        with self.lock:
            rec = self.fleet.records.get(instance_id)
            return rec.private_ip if rec is not None else None

    # ------------------------------------------------------------------ control API
    @property
    def boot_seconds(self) -> float:
        """Virtual seconds a new instance spends in Pending before its hooks (or InService)."""
        return self.fleet.boot_seconds

    @boot_seconds.setter
    def boot_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"boot_seconds must be >= 0, got {seconds!r}")
        self.fleet.boot_seconds = float(seconds)

    def advance(self, seconds: float) -> float:
        """Move the virtual clock forward and let due timers fire; returns the new time."""
        now = self.clock.advance(seconds)
        self.run_timers()
        return now

    def run_timers(self) -> None:
        """Process whatever is due now (also done every tick in the background)."""
        with self.lock:
            self.fleet.tick()
            for hook in list(self.tick_hooks):
                hook()

    def timeline(self, group: str) -> list[dict[str, Any]]:
        """Capacity history of ``group``: ``[{time, in_service, instances, desired, event}, ...]``."""
        with self.lock:
            return self._timeline.get(group)

    def api_calls(self, reset: bool = False) -> dict[str, int]:
        """API calls received from clients, by ``service:Action``."""
        return self.calls.snapshot(reset=reset)

    def instances(self, group: str | None = None) -> list[dict[str, Any]]:
        """localcloud's record of every instance (or one group's), launch order."""
        with self.lock:
            return self.fleet.describe(group)

    def reset(self) -> None:
        """Forget everything: moto state, instances (agents stopped), timelines, counters, operations."""
        with self.lock:
            self._generation += 1
            for rec in self.fleet.records.values():
                if rec.alive:
                    self.agents.stopped(rec.instance_id)
            self.fleet.records.clear()
            self.identity.forget()
            self._timeline.clear()
            self.calls.snapshot(reset=True)
            self.refresh.clear()
            self.signals.clear()
            self.stack_updates.clear()
            motoaccess.reset_all()

    # ------------------------------------------------------------------ background work
    def spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Run a background operation (rolling update, refresh) that stops with the cloud."""

        def run() -> None:
            try:
                target()
            except OperationStopped:
                log.info("%s stopped", name)
            except Exception:
                log.exception("%s failed", name)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def check_running(self, generation: int | None = None) -> None:
        """Raise :class:`OperationStopped` when the cloud is stopping or was reset."""
        if self._stopping.is_set() or (generation is not None and generation != self._generation):
            raise OperationStopped()

    @property
    def generation(self) -> int:
        """Bumped by :meth:`reset`; background operations end when it changes."""
        return self._generation

    @contextmanager
    def op_lock(self, generation: int) -> Iterator[None]:
        """The cloud lock for one step of a background operation: raises :class:`OperationStopped`
        (after taking the lock) when the cloud stopped or was reset since the operation began, so a
        stale operation never touches the next test's instances."""
        with self.lock:
            self.check_running(generation)
            yield

    def wait_for(self, predicate: Callable[[], Any], generation: int, poll: float = 0.02) -> Any:
        """Block until ``predicate()`` (called with the lock held) is truthy; stoppable."""
        while True:
            with self.op_lock(generation):
                value = predicate()
            if value:
                return value
            time.sleep(poll)

    def _spawn_daemon(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _tick_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_timers()
            except Exception:
                log.exception("localcloud timer tick failed")
            self._wake.wait(self.tick_seconds)
            self._wake.clear()
