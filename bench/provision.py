"""Benchmark: provisioning N new instances through Salt on localcloud (run on demand, not in CI).

    PYTHONPATH=_utils:. .venv/bin/python bench/provision.py [--instances 5] [--cycle] [--boot 0.5] [--keep DIR]

A real salt-master started from conf/master.d/phoenix-lifecycle.conf (engine, reactor, auth events), a
localcloud Auto Scaling group with Phoenix's LAUNCHING hook, and N instances that are real salt-minions
(localcloud.salt_instance), all through devtools.fleet (the demo's and bench/fleet.py's harness). The
instances' highstate is the stand-in role of the daemon tests (the files of
tests/integration/lifecycle_roots, copied into the run). The master's event bus gives the times.

Two measurements. **Simultaneous launches**: the group is created with N instances at once (the harder
case on one 2-core machine: N salt-minions boot, N orchestrations start and N highstates run at the same
time). **A rebuild cycle** (``--cycle``): then ``orch.rebuild`` replaces the N instances with
``rebuild.cycle``'s defaults (instance refresh, MinHealthyPercentage 90: one instance at a time for N <= 10),
what the daily cycle does.

Prints, for each instance: notification -> CONTINUE, the highstate's own time, and the difference (what
Phoenix and Salt add around the highstate), then the median and max of that difference (target: under
5 s), and the breakdown of the first instance: boot (launch -> first key request), key acceptance (first
key request, or the notification if later -> key accepted), reactor + orchestration start (trigger ->
claim done), minion answering, highstate, health check, signal.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--cycle", action="store_true",
                        help="then replace them with rebuild.cycle (orch.rebuild) and report the new instances")
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
            make_group(aws, "lc-bench", arn, desired=args.instances, terminating=args.cycle, max_size=2 * args.instances)
            first = wait_in_service(aws, "lc-bench", args.instances, timeout=600)
            elapsed = time.time() - began
            time.sleep(1)
            print(f"== {args.instances} simultaneous launches")
            report(system.cloud, system.bus, sorted(first), f"{args.instances} instances CONTINUEd in {elapsed:.1f} s "
                   "(group created -> all InService)")
            if args.cycle:
                began = time.time()
                pillar = {"group": "lc-bench", "strategy": "instance_refresh", "force": True, "poll_initial": "0.5s",
                          "poll_max": "2s", "deadline": "30m"}
                done = system.salt_run("state.orchestrate", "orch.rebuild", f"pillar={json.dumps(pillar)}")
                if done.returncode != 0:
                    print(f"orch.rebuild failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
                    return 1
                system.bus.wait("phoenix/rebuild/lc-bench/finished", after=began, timeout=1800)
                new = wait_in_service(aws, "lc-bench", args.instances, timeout=600)
                elapsed = time.time() - began
                time.sleep(1)
                print(f"\n== rebuild.cycle of the {args.instances} (instance refresh, one at a time)")
                report(system.cloud, system.bus, sorted(set(new) - set(first)),
                       f"{len(set(new) - set(first))} instances replaced in {elapsed:.1f} s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def report(cloud: Any, bus: Any, ids: list[str], title: str) -> None:
    launched = {r["instance_id"]: r for r in cloud.instances("lc-bench")}
    rows = []
    for iid in ids:
        record = launched[iid]
        recorded = bus.first(f"phoenix/lifecycle/launching/{iid}")
        done = bus.first(f"phoenix/lifecycle/continued/{iid}")
        if not recorded or not done:
            print(f"{iid}: no CONTINUE seen ({record['state']})")
            continue
        steps = {d["step"]: (at, d) for at, t, d in bus.events if t == f"phoenix/lifecycle/step/{iid}"}
        highstate = steps["highstate"][1]["seconds"]
        total = done[0] - recorded[0]
        rows.append((iid, total, highstate, total - highstate, record, recorded, steps))
    print(title)
    print(f"{'instance':22} {'notif->CONTINUE':>16} {'highstate':>10} {'difference':>11}")
    for iid, total, highstate, diff, *_ in rows:
        print(f"{iid:22} {total:15.2f}s {highstate:9.2f}s {diff:10.2f}s")
    diffs = [r[3] for r in rows]
    if diffs:
        print(f"notification -> CONTINUE minus highstate: median {statistics.median(diffs):.2f} s, "
              f"max {max(diffs):.2f} s (target < 5 s)")
    if rows:
        iid, total, highstate, diff, record, recorded, steps = max(rows, key=lambda r: r[3])
        first_auth = bus.first("salt/auth", lambda d: d.get("id") == iid)
        accepted = bus.first(f"phoenix/lifecycle/key/accepted/{iid}")
        launched_at = record["launched_at"]
        print(f"\nbreakdown of the slowest, {iid} (seconds):")
        if first_auth:
            print(f"  boot (launch -> first key request)              {first_auth[0] - launched_at:6.2f}")
        if first_auth and accepted:
            start = max(first_auth[0], recorded[0])
            print(f"  key acceptance (request/notification -> accept) {accepted[0] - start:6.2f}")
        claim_at = steps["claim"][0]
        print(f"  reactor + orchestration start (trigger -> claim) {claim_at - recorded[0]:6.2f}")
        for step in ("minion", "highstate", "reboot", "health", "signal"):
            if step in steps:
                print(f"  {step:47}{steps[step][1]['seconds']:6.2f}")
        print(f"  notification -> CONTINUE                         {total:6.2f}")
        timeline(recorded[0], steps)


def timeline(notified: float, steps: dict[str, tuple[float, dict[str, Any]]]) -> None:
    """Each step's start and end after the notification (a step's event comes at its end and carries its
    duration), and the time between steps: what the orchestration machinery costs."""
    print("\n  step timeline (s after the notification: start -> end)")
    previous_end = None
    between = 0.0
    for at, data in sorted(steps.values(), key=lambda item: item[0]):
        end = at - notified
        start = end - float(data.get("seconds") or 0)
        gap = "" if previous_end is None else f"   (+{start - previous_end:.2f} after the previous step)"
        if previous_end is not None:
            between += max(0.0, start - previous_end)
        print(f"    {data['step']:10} {start:7.2f} -> {end:7.2f}{gap}")
        previous_end = end
    print(f"  between steps, in all: {between:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
