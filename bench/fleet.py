"""Benchmark: a fleet of real salt-minions on localcloud, provisioned and rebuilt by Phoenix (on demand, not CI).

    PYTHONPATH=_utils:. .venv/bin/python bench/fleet.py [--instances 20] [--batch 5] [--json FILE] [--keep DIR]
    bash bench/run.sh fleet [-- --instances 20]

The production stack (templates/phoenix-fleet.yaml) of N instances, each a real salt-minion on its own
127.X address with the full lifecycle (key after the identity document, highstate: OS updates stand-in,
deployed commit fetched with an SSM secret, the web role = Flask app + NGINX + allowlist; health through
NGINX, profile swap, CONTINUE; TERMINATING -> orch.retire), a salt-master from the documented configs
(devtools.fleet, the same harness as the demo). Three measurements:

1. **N simultaneous launches**: the stack's N instances boot and wait in Pending:Wait while the master
   starts (on AWS they boot on their own machines; here their boot would compete with the master for
   the same cores); from the moment the engine reads the queue: time until all N are CONTINUEd, and the
   master's CPU (its whole process tree, sampled every second) and memory (RSS and PSS, peak) meanwhile.
2. **Memory at rest**: per instance (its init, salt-minion, NGINX, Flask app: PSS and RSS of the process
   tree from /proc) and of the master's tree.
3. **A rebuild cycle** after a simulated day (``orch.rebuild``, AutoScalingRollingUpdate of ``--batch``
   instances at a time, MinInstancesInService N): wall time against the critical path (per batch, the
   slowest instance's simulated boot + notification -> CONTINUE, summed over batches); AWS API calls per
   replaced instance (every client: engine, reactor orchestrations, minions, rebuild.cycle); notification
   -> CONTINUE minus the highstate (median, p95); the minimum of the InService timeline.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
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

from devtools.fleet import (PhoenixSystem, cpu_seconds, instances, memory, rebuild_status,  # noqa: E402
                            wait_in_service, web_fleet)
from localcloud.testing import wait_until  # noqa: E402

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
BOOT = 1.0  # virtual seconds in Pending before Pending:Wait


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Sampler:
    """Samples the master's process tree every second: CPU seconds used, RSS and PSS."""

    def __init__(self, system: PhoenixSystem) -> None:
        self.system = system
        self.samples: list[tuple[float, float, int, int]] = []  # (time, cpu seconds, rss, pss)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = self.system.master_pids()
            mem = memory(pids)
            self.samples.append((time.time(), cpu_seconds(pids), mem["rss"], mem["pss"]))
            self._stop.wait(1.0)

    def summary(self) -> dict[str, Any]:
        if len(self.samples) < 2:
            return {}
        (t0, c0, *_), (t1, c1, *_) = self.samples[0], self.samples[-1]
        rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(self.samples, self.samples[1:]) if b[0] > a[0]]
        return {"cpu_seconds": round(c1 - c0, 1), "cpu_mean_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
                "cpu_peak_pct": round(100 * max(rates), 1) if rates else None,
                "rss_peak_mb": round(max(s[2] for s in self.samples) / 2**20, 1),
                "pss_peak_mb": round(max(s[3] for s in self.samples) / 2**20, 1)}


def provisioning(bus: Any, ids: list[str], after: float) -> dict[str, dict[str, float]]:
    """Per instance: notification (the engine's trigger) -> CONTINUE, the highstate's own time, the rest."""
    rows = {}
    for iid in ids:
        got = [e for e in bus.matching(f"phoenix/lifecycle/launching/{iid}", after)]
        cont = bus.matching(f"phoenix/lifecycle/continued/{iid}", after, lambda d: d.get("transition") == LAUNCHING)
        steps = {d["step"]: d for _, _, d in bus.matching(f"phoenix/lifecycle/step/{iid}", after) if d.get("result")}
        if not got or not cont or "highstate" not in steps:
            continue
        total = cont[0][0] - got[0][0]
        rows[iid] = {"launching_at": got[0][0], "continued_at": cont[0][0], "total": total,
                     "highstate": steps["highstate"]["seconds"], "rest": total - steps["highstate"]["seconds"]}
    return rows


def stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "p95": round(percentile(values, 0.95), 2),
            "max": round(max(values), 2)} if values else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5, help="rolling update batch size (default 5)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", help="keep the run's files in this directory (default: removed)")
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="phoenix-bench-fleet-"))
    n = args.instances
    figures: dict[str, Any] = {"instances": n, "batch": args.batch, "cores": os.cpu_count(),
                               "load_before": os.getloadavg()}
    system = PhoenixSystem(root, boot_seconds=BOOT, master_id="bench-fleet-master")
    try:
        system.start()
        aws = {s: system.client(s) for s in ("autoscaling", "cloudformation")}
        print(f"fleet bench: {n} instances, batch {args.batch}; files in {root}", flush=True)
        began = time.time()
        with Sampler(system) as sampler:
            fleet = web_fleet(system, instances=n, batch=args.batch, secret="phx-bench-" + secrets.token_hex(8),
                              highstate_timeout=900)
            group = fleet["group"]
            bus = system.bus
            engine_up = time.time()
            reading = bus.wait("phoenix/lifecycle/launching/*", timeout=300)[0]  # the engine reads the queue
            wait_in_service(aws, group, n, timeout=args.timeout)
            ids = list(instances(aws, group))
            for iid in ids:
                bus.wait(f"phoenix/lifecycle/continued/{iid}", timeout=120)
            all_continued = max(bus.first(f"phoenix/lifecycle/continued/{iid}")[0] for iid in ids)
        launch = provisioning(bus, ids, 0)
        figures["launch"] = {
            "master_start_s": round(engine_up - began, 1),
            "first_trigger_to_all_continued_s": round(all_continued - reading, 1),
            "notification_to_continue_s": stats([r["total"] for r in launch.values()]),
            "minus_highstate_s": stats([r["rest"] for r in launch.values()]),
            "highstate_s": stats([r["highstate"] for r in launch.values()]),
            "master": sampler.summary(),
        }
        print(f"\n{n} simultaneous launches: all CONTINUEd {figures['launch']['first_trigger_to_all_continued_s']} s "
              f"after the engine's first trigger; master {figures['launch']['master']}", flush=True)

        # ------------------------------------------------------------ memory at rest
        time.sleep(5)
        per = [memory(pids) for pids in system.instance_pids().values()]
        master_mem = memory(system.master_pids())
        figures["memory"] = {
            "instance_pss_mb": stats([m["pss"] / 2**20 for m in per]),
            "instance_rss_mb": stats([m["rss"] / 2**20 for m in per]),
            "instance_processes": stats([float(m["processes"]) for m in per]),
            "instances_total_pss_mb": round(sum(m["pss"] for m in per) / 2**20, 1),
            "master_pss_mb": round(master_mem["pss"] / 2**20, 1), "master_rss_mb": round(master_mem["rss"] / 2**20, 1),
            "master_processes": master_mem["processes"],
        }
        print(f"memory at rest: {figures['memory']}", flush=True)

        # ------------------------------------------------------------ the cycle
        system.cloud.advance(86400)
        before = rebuild_status(system, fleet["stack"])
        old = set(ids)
        timeline_from = len(system.cloud.timeline(group))
        calls_before = system.cloud.api_calls()
        start = time.time()
        pillar = json.dumps({"stack": fleet["stack"], "poll_initial": "0.5s", "poll_max": "2s", "deadline": "60m"})
        with Sampler(system) as cycle_sampler:
            done = system.salt_run("state.orchestrate", "orch.rebuild", f"pillar={pillar}", timeout=args.timeout * 3)
            finished = bus.matching(f"phoenix/rebuild/{group}/finished", start)
            stack_done = time.time()
            for iid in old:
                bus.wait(f"phoenix/lifecycle/retired/{iid}", after=start, timeout=300)
            all_retired = time.time()
        calls_after = system.cloud.api_calls()
        new = sorted(set(instances(aws, group)) - old)
        after = rebuild_status(system, fleet["stack"])
        cycle = provisioning(bus, new, start)
        batches: list[list[dict[str, float]]] = []
        for row in sorted(cycle.values(), key=lambda r: r["launching_at"]):
            if batches and len(batches[-1]) < args.batch and row["launching_at"] - batches[-1][0]["launching_at"] < 10:
                batches[-1].append(row)
            else:
                batches.append([row])
        critical = sum(BOOT + max(r["total"] for r in batch) for batch in batches)
        delta = {k: calls_after.get(k, 0) - calls_before.get(k, 0) for k in calls_after}
        delta = {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v}
        replaced = finished[-1][2].get("replaced") if finished else 0
        timeline = system.cloud.timeline(group)[max(timeline_from - 1, 0):]
        figures["cycle"] = {
            "result": bool(finished) and done.returncode == 0, "replaced": replaced,
            "abandoned": len(bus.matching("phoenix/lifecycle/abandoned/*", start)),
            "wall_s": round(stack_done - start, 1), "until_last_retired_s": round(all_retired - start, 1),
            "batches": len(batches), "critical_path_s": round(critical, 1),
            "wall_over_critical": round((stack_done - start) / critical, 2) if critical else None,
            "aws_calls": sum(delta.values()), "aws_calls_per_replaced": round(sum(delta.values()) / replaced, 1)
            if replaced else None, "aws_calls_top": dict(list(delta.items())[:12]),
            "notification_to_continue_s": stats([r["total"] for r in cycle.values()]),
            "minus_highstate_s": stats([r["rest"] for r in cycle.values()]),
            "highstate_s": stats([r["highstate"] for r in cycle.values()]),
            "min_in_service": min(e["in_service"] for e in timeline) if timeline else None,
            "oldest_before_h": round((before.get("oldest_age_seconds") or 0) / 3600, 2),
            "oldest_after_s": after.get("oldest_age_seconds"),
            "master": cycle_sampler.summary(),
        }
        if done.returncode != 0:
            print(f"orch.rebuild failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}", file=sys.stderr)
        figures["load_after"] = os.getloadavg()
    finally:
        system.stop()
        figures["leftovers"] = system.leftovers()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0 if figures.get("cycle", {}).get("result") and not figures["leftovers"] else 1


def report(f: dict[str, Any]) -> None:
    print(json.dumps(f, indent=2, default=str))
    launch, mem, cycle = f.get("launch", {}), f.get("memory", {}), f.get("cycle", {})
    if launch:
        print(f"\n{f['instances']} simultaneous launches: all CONTINUEd in {launch['first_trigger_to_all_continued_s']} s "
              f"(notification -> CONTINUE median {launch['notification_to_continue_s'].get('median')} s, p95 "
              f"{launch['notification_to_continue_s'].get('p95')} s; minus the highstate: median "
              f"{launch['minus_highstate_s'].get('median')} s, p95 {launch['minus_highstate_s'].get('p95')} s); master "
              f"CPU {launch['master'].get('cpu_mean_pct')} % mean, {launch['master'].get('cpu_peak_pct')} % peak "
              f"(100 % = one core), memory peak {launch['master'].get('pss_peak_mb')} MB PSS / "
              f"{launch['master'].get('rss_peak_mb')} MB RSS")
    if mem:
        print(f"memory at rest: per instance {mem['instance_pss_mb'].get('median')} MB PSS "
              f"({mem['instance_rss_mb'].get('median')} MB RSS, {mem['instance_processes'].get('median'):.0f} processes); "
              f"master {mem['master_pss_mb']} MB PSS ({mem['master_rss_mb']} MB RSS, {mem['master_processes']} processes)")
    if cycle:
        print(f"cycle: replaced {cycle['replaced']}, abandoned {cycle['abandoned']}, wall {cycle['wall_s']} s "
              f"(last old instance retired at {cycle['until_last_retired_s']} s) vs critical path "
              f"{cycle['critical_path_s']} s over {cycle['batches']} batches (x{cycle['wall_over_critical']}); "
              f"{cycle['aws_calls_per_replaced']} AWS calls per replaced instance; notification -> CONTINUE minus "
              f"highstate median {cycle['minus_highstate_s'].get('median')} s, p95 {cycle['minus_highstate_s'].get('p95')} s; "
              f"min InService {cycle['min_in_service']}")
    print(f"leftover processes: {f.get('leftovers') or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
