"""Benchmark: provisioning N new instances through Salt on localcloud (run on demand, not in CI).

    PYTHONPATH=_utils:. .venv/bin/python bench/provision.py [--instances 5] [--boot 0.5] [--keep DIR]

A real salt-master started from conf/master.d/phoenix-lifecycle.conf (engine, reactor, auth events), a
localcloud Auto Scaling group with Phoenix's LAUNCHING hook, and N instances that are real salt-minions
(localcloud.salt_instance). The instances' highstate is the test role of the daemon tests
(tests/integration/lifecycle_roots). The master's event bus gives the times.

Prints, for each instance: notification -> CONTINUE, the highstate's own time, and the difference (what
Phoenix and Salt add around the highstate), then the median and max of that difference (target: under
5 s), and the breakdown of the first instance: boot (launch -> first key request), key acceptance (first
key request, or the notification if later -> key accepted), reactor + orchestration start (trigger ->
claim done), minion answering, highstate, health check, signal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO / "_utils", REPO):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "_utils"), str(REPO), os.environ.get("PYTHONPATH", "")])
for key, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                   "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(key, value)

import yaml  # noqa: E402

from localcloud import LocalCloud  # noqa: E402
from localcloud.salt_instance import SaltInstanceAgent  # noqa: E402
from localcloud.testing import client, wait_until  # noqa: E402
from tests.integration import lifecycle_master as lm  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bus:
    """Collects every master event with its arrival time (a thread on the master's event bus)."""

    def __init__(self, opts: dict[str, Any]) -> None:
        import salt.utils.event

        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._bus = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self._bus.get_event(wait=0.5, full=True)
            if event:
                self.events.append((time.time(), event["tag"], event.get("data") or {}))

    def first(self, tag: str, where=lambda d: True) -> tuple[float, dict[str, Any]] | None:
        for at, t, data in list(self.events):
            if t == tag and where(data):
                return at, data
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._bus.destroy()


def start_master(root: Path, endpoint: str, queue_url: str, certificate: Path, pillar: Path) -> tuple[Any, Path]:
    config = lm.master_overrides(endpoint, queue_url, certificate, pillar)
    config.update({"id": "bench-master", "root_dir": str(root), "pki_dir": "pki", "cachedir": "cache",
                   "sock_dir": "run/master", "pidfile": "run/master.pid", "log_file": "logs/master.log",
                   "log_level_logfile": "info", "publish_port": free_port(), "ret_port": free_port(),
                   # the master's internal TCP ports default to 4512-4515: other masters on the machine
                   "tcp_master_pub_port": free_port(), "tcp_master_pull_port": free_port(),
                   "tcp_master_publish_pull": free_port(), "tcp_master_workers": free_port(),
                   "user": __import__("getpass").getuser()})
    conf_dir = root / "conf"
    conf_dir.mkdir(parents=True)
    (conf_dir / "master").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-c", "import salt.scripts; salt.scripts.salt_master()",
                             "--config-dir", str(conf_dir), "--log-level", "quiet"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, conf_dir / "master"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--boot", type=float, default=0.5, help="virtual seconds in Pending before Pending:Wait")
    parser.add_argument("--keep", help="keep the run's files in this directory")
    args = parser.parse_args()

    import signal

    import salt.config

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the master and the instances on SIGTERM too

    root = Path(args.keep or tempfile.mkdtemp(prefix="phoenix-bench-provision-"))
    agent = SaltInstanceAgent(root / "instances", master_port=0, publish_port=0)
    master = None
    bus = None
    try:
        with LocalCloud(boot_seconds=args.boot, agent=agent) as cloud:
            aws = {name: client(cloud.endpoint, name) for name in ("autoscaling", "ec2", "sqs")}
            url = aws["sqs"].create_queue(QueueName="bench-lifecycle")["QueueUrl"]
            arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            certificate = root / "identity.pem"
            certificate.write_text(cloud.identity_certificate_pem)
            pillar = lm.pillar_root(root)
            master, conf = start_master(root / "master", cloud.endpoint, url, certificate, pillar)
            opts = salt.config.master_config(str(conf))
            agent.master_port, agent.publish_port = opts["ret_port"], opts["publish_port"]
            wait_until(lambda: os.path.exists(os.path.join(opts["sock_dir"], "master_event_pub.ipc")), timeout=120,
                       interval=0.5, message="the master's event bus")
            bus = Bus(opts)
            ledger = Path(opts["cachedir"]) / "phoenix" / "lifecycle.sqlite"
            wait_until(ledger.exists, timeout=120, interval=0.5, message="the lifecycle engine's ledger")
            time.sleep(5)  # the engine subscribes and polls, the reactor starts
            began = time.time()
            lm.make_group(aws, "lc-bench", arn, desired=args.instances, terminating=False, max_size=args.instances)
            lm.wait_in_service(aws, "lc-bench", args.instances, timeout=600)
            elapsed = time.time() - began
            time.sleep(1)
            report(cloud, bus, elapsed)
    finally:
        if bus is not None:
            bus.close()
        if master is not None:
            os.killpg(master.pid, 15)
            master.wait(30)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def report(cloud: LocalCloud, bus: Bus, elapsed: float) -> None:
    rows = []
    for record in cloud.instances("lc-bench"):
        iid = record["instance_id"]
        recorded = bus.first(f"phoenix/lifecycle/launching/{iid}")
        done = bus.first(f"phoenix/lifecycle/continued/{iid}")
        if not recorded or not done:
            print(f"{iid}: no CONTINUE seen ({record['state']})")
            continue
        steps = {d["step"]: (at, d) for at, t, d in bus.events if t == f"phoenix/lifecycle/step/{iid}"}
        highstate = steps["highstate"][1]["seconds"]
        total = done[0] - recorded[0]
        rows.append((iid, total, highstate, total - highstate, record, recorded, steps))
    print(f"{len(rows)} instances CONTINUEd in {elapsed:.1f} s (group created -> all InService)")
    print(f"{'instance':22} {'notif->CONTINUE':>16} {'highstate':>10} {'difference':>11}")
    for iid, total, highstate, diff, *_ in rows:
        print(f"{iid:22} {total:15.2f}s {highstate:9.2f}s {diff:10.2f}s")
    diffs = [r[3] for r in rows]
    if diffs:
        print(f"notification -> CONTINUE minus highstate: median {statistics.median(diffs):.2f} s, "
              f"max {max(diffs):.2f} s (target < 5 s)")
    if rows:
        iid, total, highstate, diff, record, recorded, steps = rows[0]
        first_auth = bus.first("salt/auth", lambda d: d.get("id") == iid)
        accepted = bus.first(f"phoenix/lifecycle/key/accepted/{iid}")
        launched = record["launched_at"]
        print(f"\nbreakdown of {iid} (seconds):")
        if first_auth:
            print(f"  boot (launch -> first key request)              {first_auth[0] - launched:6.2f}")
        if first_auth and accepted:
            start = max(first_auth[0], recorded[0])
            print(f"  key acceptance (request/notification -> accept) {accepted[0] - start:6.2f}")
        claim_at = steps["claim"][0]
        print(f"  reactor + orchestration start (trigger -> claim) {claim_at - recorded[0]:6.2f}")
        for step in ("minion", "highstate", "health", "signal"):
            if step in steps:
                print(f"  {step:47}{steps[step][1]['seconds']:6.2f}")
        print(f"  notification -> CONTINUE                         {total:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
