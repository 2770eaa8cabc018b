"""An NGINX on 127.0.0.1 that plays the Application Load Balancer in front of a localcloud target group,
and a steady client that counts the requests it loses.

    alb = LoadBalancer(prefix, endpoint, target_group_arn).start()   # nginx + the follower thread
    with SteadyClient(alb.url) as traffic:
        ...                                                          # replace the fleet
    traffic.failed                                                   # goal: 0

The follower polls ``DescribeTargetHealth`` and routes to **healthy targets only** (``initial``,
``draining`` and ``unused`` targets get no new requests, as with an ALB), resolving each target to
``<instance's PrivateIpAddress>:<target port>`` through EC2 ``DescribeInstances`` (or a resolver you
pass). When the set changes it rewrites the ``upstream`` block, checks the config with ``nginx -t``,
runs ``nginx -s reload`` and waits until NGINX answers with the new generation (``/_alb/generation``)
and every worker of the old generation has exited.
Addresses outside 127.0.0.0/8 are refused (logged, never routed): nothing leaves the machine.

Differences from an ALB, on purpose: ``proxy_next_upstream off`` (an ALB does not retry a failed
request on another target, so a lost request shows up as one), ``503`` when there is no healthy target
(an ALB answers 503 when the target group has no registered target), no health checks of its own (the
target group's states are localcloud's).
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from devtools.nginx import Nginx, free_port, wait_port

log = logging.getLogger(__name__)

Address = tuple[str, int]
Resolver = Callable[[list[tuple[str, int]]], dict[str, Address]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an IPv4 address in 127.0.0.0/8."""
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


def render_http(port: int, upstreams: list[Address], generation: int) -> str:
    """The http block body: one server on 127.0.0.1:``port`` proxying to ``upstreams`` (503 if none)."""
    status = f'location = /_alb/generation {{ return 200 "{generation}"; }}'
    if not upstreams:
        return (f"server {{\n    listen 127.0.0.1:{port};\n    {status}\n"
                "    location / { return 503; }\n}\n")
    servers = "".join(f"    server {host}:{p};\n" for host, p in sorted(set(upstreams)))
    return (
        f"upstream phoenix_targets {{\n{servers}}}\n"
        f"server {{\n    listen 127.0.0.1:{port};\n    {status}\n"
        "    location / {\n"
        "        proxy_pass http://phoenix_targets;\n"
        "        proxy_next_upstream off;\n"
        "        proxy_connect_timeout 2s;\n"
        "        proxy_set_header Host $host;\n"
        "        proxy_set_header X-Forwarded-For $remote_addr;\n"
        "    }\n}\n"
    )


def healthy_targets(descriptions: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """``(target id, port)`` of the ``healthy`` entries of a DescribeTargetHealth answer."""
    return sorted((d["Target"]["Id"], int(d["Target"]["Port"])) for d in descriptions
                  if d.get("TargetHealth", {}).get("State") == "healthy")


def ec2_resolver(ec2: Any) -> Resolver:
    """Resolve instance targets to their ``PrivateIpAddress`` (as an ALB routes to the primary IP)."""

    def resolve(targets: list[tuple[str, int]]) -> dict[str, Address]:
        ids = sorted({tid for tid, _ in targets if tid.startswith("i-")})
        found: dict[str, str] = {}
        if ids:
            for reservation in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance.get("PrivateIpAddress"):
                        found[instance["InstanceId"]] = instance["PrivateIpAddress"]
        out: dict[str, Address] = {}
        for tid, port in targets:
            host = found.get(tid, tid)  # an ``ip`` target is its own address
            out[tid] = (host, port)
        return out

    return resolve


class LoadBalancer:
    """NGINX on 127.0.0.1:``port`` whose upstreams follow a target group's healthy targets."""

    def __init__(self, prefix: Path, endpoint: str, target_group_arn: str, port: int | None = None,
                 resolver: Resolver | None = None, poll_seconds: float = 0.2, region: str = "us-east-1") -> None:
        from localcloud.testing import client

        self.prefix = Path(prefix)
        self.port = port or free_port()
        self.target_group_arn = target_group_arn
        self.elb = client(endpoint, "elbv2", region)
        self.resolver = resolver or ec2_resolver(client(endpoint, "ec2", region))
        self.poll_seconds = poll_seconds
        self.generation = 0
        self.upstreams: dict[str, Address] = {}  # target id -> address NGINX routes to now
        self.history: list[tuple[float, list[str]]] = []  # (monotonic time, routed target ids) per change
        self.refused: set[str] = set()  # targets whose address is not on loopback
        self.errors: list[str] = []
        self.nginx = Nginx(self.prefix, render_http(self.port, [], 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="alb-follower", daemon=True)

    @property
    def url(self) -> str:
        """Where clients send requests."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoadBalancer":
        """Start NGINX and the follower."""
        self.nginx.start(port=self.port)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the follower and NGINX."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.nginx.stop()

    def __enter__(self) -> "LoadBalancer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def routed(self) -> set[str]:
        """Target ids NGINX routes to right now (the applied generation)."""
        return set(self.upstreams)

    # ------------------------------------------------------------------ the follower
    def sync(self) -> bool:
        """One poll: read the target group, apply a changed set of healthy targets. True if it changed."""
        targets = healthy_targets(self.elb.describe_target_health(
            TargetGroupArn=self.target_group_arn)["TargetHealthDescriptions"])
        resolved = self.resolver(targets)
        wanted: dict[str, Address] = {}
        for tid, address in resolved.items():
            if is_loopback(address[0]):
                wanted[tid] = address
            elif tid not in self.refused:
                self.refused.add(tid)
                log.warning("target %s resolves to %s, not on 127.0.0.0/8: not routed", tid, address[0])
        if wanted == self.upstreams:
            return False
        self.apply(wanted)
        return True

    def apply(self, wanted: dict[str, Address]) -> None:
        """Write the config for ``wanted``, ``nginx -t``, ``nginx -s reload``, wait for the new generation."""
        generation = self.generation + 1
        previous = self.nginx.conf.read_text()
        self.nginx.write(render_http(self.port, list(wanted.values()), generation))
        checked = self.nginx.test()
        if checked.returncode != 0:
            self.nginx.conf.write_text(previous)  # the running config stays as it was
            raise RuntimeError(f"nginx -t refused the ALB config: {checked.stderr.strip()}")
        old_workers = self.nginx.workers()
        subprocess.run(self.nginx.argv("-s", "reload"), check=True, capture_output=True)
        # Loaded means: a new worker answers with the generation AND every worker of the old one has exited.
        # Until an old worker has handled its QUIT it still accepts connections and answers them with the
        # old config (a 503 from generation 0 once failed the replacement test).
        deadline = time.monotonic() + 10
        while self.current_generation() != generation or old_workers & self.nginx.workers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not load generation {generation}: {self.nginx.error_log()[-500:]}")
            time.sleep(0.02)
        self.generation = generation
        self.upstreams = wanted
        self.history.append((time.monotonic(), sorted(wanted)))
        log.info("ALB routes to %s", ", ".join(f"{t}={h}:{p}" for t, (h, p) in sorted(wanted.items())) or "nothing")

    def current_generation(self) -> int | None:
        """The generation NGINX answers with (None when it does not answer)."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/_alb/generation")
            body = conn.getresponse().read().decode()
            conn.close()
            return int(body)
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # keep following; the test reads .errors
                self.errors.append(f"{type(exc).__name__}: {exc}")
                log.warning("ALB follower: %s", exc)
            self._stop.wait(self.poll_seconds)

    def wait_routed(self, predicate: Callable[[set[str]], bool], timeout: float = 30.0) -> set[str]:
        """Block until the routed set satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            routed = self.routed()
            if predicate(routed):
                return routed
            time.sleep(0.05)
        raise AssertionError(f"ALB routes to {sorted(self.routed())} after {timeout}s; errors: {self.errors[-3:]}")


class SteadyClient:
    """A thread sending ``GET path`` to ``url`` back to back (one connection per request) and counting:
    ``ok`` (status 200), ``failed`` (anything else, or no answer within ``timeout``), ``served_by``
    (response bodies, e.g. the instance id a test server answers with)."""

    def __init__(self, url: str, path: str = "/", timeout: float = 5.0, pause: float = 0.02) -> None:
        host_port = url.split("://", 1)[-1].rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        self.path, self.timeout, self.pause = path, timeout, pause
        self.ok = 0
        self.failed = 0
        self.failures: list[str] = []
        self.served_by: Counter[str] = Counter()
        self.last_served: dict[str, float] = {}  # body -> monotonic time of its last answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-client", daemon=True)

    @property
    def total(self) -> int:
        """Requests sent so far."""
        return self.ok + self.failed

    def __enter__(self) -> "SteadyClient":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read().decode(errors="replace").strip()
                conn.close()
                if response.status == 200:
                    self.ok += 1
                    self.served_by[body] += 1
                    self.last_served[body] = time.monotonic()
                else:
                    self.failed += 1
                    self.failures.append(f"HTTP {response.status}: {body[:80]}")
            except (OSError, http.client.HTTPException) as exc:
                self.failed += 1
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.pause)


__all__ = ["LoadBalancer", "SteadyClient", "ec2_resolver", "healthy_targets", "is_loopback", "render_http",
           "wait_port"]
