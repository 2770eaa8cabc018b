"""Benchmark: provisioning N new instances through Salt on localcloud (run on demand, not in CI).

    PYTHONPATH=_utils:. .venv/bin/python bench/provision.py [--instances 5] [--boot 0.5] [--keep DIR]

A real salt-master started from conf/master.d/phoenix-lifecycle.conf (engine, reactor, auth events), a
localcloud Auto Scaling group with Phoenix's LAUNCHING hook, and N instances that are real salt-minions
(localcloud.salt_instance), all through devtools.fleet (the demo's and bench/fleet.py's harness). The
instances' highstate is the stand-in role of the daemon tests (the files of
tests/integration/lifecycle_roots, copied into the run). The master's event bus gives the times.

Prints, for each instance: notification -> CONTINUE, the highstate's own time, and the difference (what
Phoenix and Salt add around the highstate), then the median and max of that difference (target: under
5 s), and the breakdown of the first instance: boot (launch -> first key request), key acceptance (first
key request, or the notification if later -> key accepted), reactor + orchestration start (trigger ->
claim done), minion answering, highstate, health check, signal.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO / "_utils", REPO):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from devtools.fleet import PhoenixSystem, make_group, wait_in_service  # noqa: E402

#: the instances' highstate: the stand-in role of the daemon tests (files read from there, nothing imported)
TEST_ROLE = REPO / "tests" / "integration" / "lifecycle_roots"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--boot", type=float, default=0.5, help="virtual seconds in Pending before Pending:Wait")
    parser.add_argument("--keep", help="keep the run's files in this directory")
    args = parser.parse_args()

    root = Path(args.keep or tempfile.mkdtemp(prefix="phoenix-bench-provision-"))
    try:
        with PhoenixSystem(root, boot_seconds=args.boot, master_id="bench-master") as system:
            sqs = system.client("sqs")
            aws = {name: system.client(name) for name in ("autoscaling", "ec2", "sqs")}
            url = sqs.create_queue(QueueName="bench-lifecycle")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            system.start_master(url, groups=["lc-*"],
                                states={"top.sls": (TEST_ROLE / "top.sls").read_text(),
                                        "lifecycle_test/init.sls": (TEST_ROLE / "lifecycle_test" / "init.sls").read_text(),
                                        "lifecycle_test/healthd.py": (TEST_ROLE / "lifecycle_test" / "healthd.py").read_text()},
                                pillar={"top.sls": {"base": {"i-*": ["lifecycle_test"]}},
                                        "lifecycle_test.sls": {"lifecycle_test": {"mode": "ok"}}})
            time.sleep(11)  # the engine reads the queue RESUME_DELAY (10 s) after it starts
            began = time.time()
            make_group(aws, "lc-bench", arn, desired=args.instances, terminating=False, max_size=args.instances)
            wait_in_service(aws, "lc-bench", args.instances, timeout=600)
            elapsed = time.time() - began
            time.sleep(1)
            report(system.cloud, system.bus, elapsed)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def report(cloud: Any, bus: Any, elapsed: float) -> None:
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
