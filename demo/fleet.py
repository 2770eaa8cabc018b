"""The whole Phoenix system on one machine: a fleet provisioned by Salt, rebuilt after a simulated day, with
no request lost behind its load balancer.

    python -m demo.fleet [--instances 3] [--logs DIR] [--json FILE]      (bash scripts/demo.sh runs it)

It starts localcloud (the AWS stand-in: moto plus the Auto Scaling lifecycle on a simulated clock), creates
the production stack (templates/phoenix-fleet.yaml: an Auto Scaling group of 3 behind an ALB target group,
with Phoenix's lifecycle hooks and queue) and a salt-master from the documented master config
(conf/master.d/phoenix-lifecycle.conf + phoenix-secrets.conf: the lifecycle engine and the reactor).
Each instance is a real salt-minion on its own 127.X address, provisioned through the lifecycle flow
(key accepted after its identity document is verified, highstate with OS updates, the deployed commit
fetched with a secret from SSM, the sample Flask app with the Werkzeug debugger ON behind its own NGINX
with the allowlist, health checked through NGINX, instance profile swapped, CONTINUE). Then it

1. shows, for one instance, the debugger reachable on the app directly and 404 through its NGINX;
2. prints ``rebuild.status`` (instances, ages, launch versions, past max age);
3. lets a simulated day pass and runs ``salt-run state.orchestrate orch.rebuild``, with a live display of
   the master's event bus (batches, each instance's provisioning steps, CONTINUE/ABANDON, retirements);
4. keeps client requests flowing through an NGINX on 127.0.0.1 that plays the ALB (its upstreams follow
   the target group: registered at InService, drained before termination) and counts the failures;
5. prints a summary (replaced, abandoned, ages before/after, minimum capacity, duration, the secret scan
   of every file, log and event the run left), stops everything it started and says where the logs are.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STACK = "web"
DEBUGGER = "/?__debugger__=yes&cmd=resource&f=style.css"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
STEP_LABELS = {"claim": "claimed", "minion": "minion up", "highstate": "highstate", "reboot": "reboot check",
               "health": "health via NGINX", "profile": "profile swap", "signal": "CONTINUE sent",
               "secrets": "secrets closed", "inventory": "inventory"}


class Display:
    """Prints the master's events as they arrive (a listener of :class:`devtools.fleet.Bus`)."""

    def __init__(self, start: float, out: Any = sys.stdout) -> None:
        self.start, self.out, self.enabled = start, out, True
        self.refused: set[tuple[str, Any]] = set()

    def line(self, text: str) -> None:
        print(f"  [{time.time() - self.start:6.1f}s] {text}", file=self.out, flush=True)

    def __call__(self, at: float, tag: str, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = tag.split("/")
        if tag.startswith("phoenix/lifecycle/"):
            kind, iid = parts[2], parts[-1]
            if kind == "launching":
                self.line(f"{iid}  LAUNCHING notification -> orch.provision")
            elif kind == "key" and parts[3] == "accepted":
                self.line(f"{iid}  key accepted (identity document verified)")
            elif kind == "key" and parts[3] == "refused":
                if (iid, data.get("reason")) not in self.refused:  # a minion asks again every second
                    self.refused.add((iid, data.get("reason")))
                    self.line(f"{iid}  key left pending: {data.get('reason')}")
            elif kind == "step":
                step = data.get("step", "?")
                if step == "claim" and not data.get("result"):
                    return  # a repeated trigger that found the action taken
                seconds = data.get("seconds")
                took = f" {seconds:.1f}s" if isinstance(seconds, (int, float)) else ""
                if isinstance(data.get("states_seconds"), (int, float)):
                    took += f" (states {data['states_seconds']:.1f}s)"
                verdict = "ok" if data.get("result") else f"FAILED: {data.get('comment') or data.get('reason') or ''}"
                self.line(f"{iid}    {STEP_LABELS.get(step, step):17}{verdict}{took}")
            elif kind == "continued" and data.get("transition") == TERMINATING:
                self.line(f"{iid}  CONTINUE: Auto Scaling terminates it")
            elif kind == "continued":
                self.line(f"{iid}  CONTINUE: provisioned, in service")
            elif kind == "abandoned":
                self.line(f"{iid}  ABANDON: {data.get('reason')}")
            elif kind == "terminating":
                self.line(f"{iid}  TERMINATING notification -> orch.retire")
            elif kind == "retired":
                self.line(f"{iid}  retired (key deleted, minion cache flushed)")
        elif tag.startswith("phoenix/rebuild/"):
            stage = "/".join(parts[3:])
            message = data.get("message") or ""
            if stage in ("progress", "stack_event") and not message:
                return
            if stage == "progress" and data.get("heartbeat"):
                return
            label = {"batch": "BATCH", "triggered": "rebuild", "started": "rebuild", "finished": "rebuild",
                     "failed": "rebuild FAILED"}.get(stage, stage)
            self.line(f"{label}: {message}" if message else f"{label}")


def http_status(host: str, port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, body
    finally:
        conn.close()


def ages(status: dict[str, Any]) -> list[float]:
    return [r["age_seconds"] for r in status.get("instances", []) if r.get("age_seconds") is not None]


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def print_status(status: dict[str, Any]) -> None:
    print(f"  group {status.get('group')}  launch version {status.get('group_launch_version')}  "
          f"max age {hours(status.get('max_age_seconds') or 86400)}  (server time {status.get('now')})")
    print(f"  {'instance':21} {'state':12} {'age':>8} {'launch version':28} {'past max age':12}")
    for row in status.get("instances", []):
        print(f"  {row['instance_id']:21} {row['lifecycle_state']:12} {hours(row['age_seconds'] or 0):>8} "
              f"{row['launch_version']:28} {'YES' if row['past_max_age'] else 'no':12}")
    schedule = status.get("schedule") or {}
    if schedule:
        print(f"  cycle due: {'YES' if schedule.get('due') else 'no'} ({schedule.get('reason')})")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from devtools.alb import SteadyClient
    from devtools.fleet import PhoenixSystem, instances, wait_in_service, web_fleet
    from devtools.secret_scan import scan
    from localcloud.testing import wait_until

    began = time.time()
    root = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="phoenix-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    secret = "phx-demo-" + secrets.token_hex(16)
    result: dict[str, Any] = {"logs": str(root), "instances": args.instances}
    system = PhoenixSystem(root, boot_seconds=1.0, master_id="phoenix-demo-master")
    print(f"Phoenix fleet demo: {args.instances} instances; everything this run writes is in {root}")
    display = Display(began)
    try:
        system.start()
        cloud = system.cloud
        aws = {n: system.client(n) for n in ("cloudformation", "autoscaling", "ec2", "elbv2")}
        print(f"\n== localcloud on {cloud.endpoint} (instances on {cloud.addresses.network})")
        print(f"== stack {STACK} (templates/phoenix-fleet.yaml) of {args.instances} instances: they boot and wait in "
              "Pending:Wait for Salt")
        print("== salt-master from conf/master.d/phoenix-lifecycle.conf + phoenix-secrets.conf "
              "(lifecycle engine, reactor, SSM secrets in pillar during provisioning only)")
        fleet = web_fleet(system, instances=args.instances, batch=args.batch, secret=secret, stack=STACK)
        group, out = fleet["group"], fleet["outputs"]
        # the load balancer follows the target group from the start (it routes once targets are healthy)
        alb = system.start_load_balancer(out["TargetGroupArn"])
        bus = system.bus
        assert bus is not None
        bus.listeners.append(display)
        print(f"   master up in {time.time() - began:.0f} s; provisioning (live, from the master's event bus):")
        wait_in_service(aws, group, args.instances, timeout=args.timeout)
        for iid in instances(aws, group):
            bus.wait(f"phoenix/lifecycle/step/{iid}", where=lambda d: d.get("step") == "secrets", timeout=60)
        result["provisioned_s"] = round(time.time() - began, 1)
        print(f"   {args.instances} instances in service after {result['provisioned_s']:.0f} s")

        # ---------------------------------------------------------------- the allowlist on one instance
        first = sorted(instances(aws, group))[0]
        address = cloud.private_ip(first)
        print(f"\n== {first} ({address}): the Flask app runs with the Werkzeug debugger ON")
        print(f"  {'request':48} {'app directly (:8000)':22} {'through its NGINX (:8080)':24}")
        answers: dict[str, list[int]] = {}
        for path in ("/", "/console", DEBUGGER):
            direct, _ = http_status(address, 8000, path)
            guarded, _ = http_status(address, 8080, path)
            answers[path] = [direct, guarded]
            print(f"  GET {path:44} {direct:<22} {guarded:<24}")
        result["allowlist"] = answers

        # ---------------------------------------------------------------- the load balancer and traffic
        alb.wait_routed(lambda routed: len(routed) == args.instances, timeout=120)
        print(f"\n== load balancer: NGINX on {alb.url}, upstreams follow target group "
              f"{out['TargetGroupArn'].rsplit(':', 1)[-1]} (healthy targets only, 5 s deregistration delay)")
        with SteadyClient(alb.url, path="/") as traffic:
            wait_until(lambda: traffic.ok > 20, timeout=30, message="requests through the load balancer")
            print(f"   steady client: {traffic.ok} requests answered so far, {traffic.failed} failed")

            # ------------------------------------------------------------ status, a day, the rebuild
            print("\n== rebuild.status stack=web  (salt-run salt.cmd rebuild.status stack=web)")
            before = status(system)
            print_status(before)
            cloud.advance(86400)
            print("\n== a simulated day passes (localcloud's clock +24 h)")
            day_later = status(system)
            print_status(day_later)
            old = set(instances(aws, group))
            timeline_from = len(cloud.timeline(group))
            alb_from = len(alb.history)
            calls_before = cloud.api_calls()
            cycle_start = time.time()
            pillar = json.dumps({"stack": STACK, "poll_initial": "0.5s", "poll_max": "2s", "deadline": "30m"})
            print(f"\n== salt-run state.orchestrate orch.rebuild pillar='{pillar}'  (live:)")
            done = system.salt_run("state.orchestrate", "orch.rebuild", f"pillar={pillar}", timeout=args.timeout * 3)
            cycle_seconds = time.time() - cycle_start
            finished = bus.matching(f"phoenix/rebuild/{group}/finished", cycle_start)
            failed = bus.matching(f"phoenix/rebuild/{group}/failed", cycle_start)
            new = set(instances(aws, group)) - old
            if finished and not failed:
                for iid in old:  # the last old instances drain and retire after the stack update completes
                    bus.wait(f"phoenix/lifecycle/retired/{iid}", after=cycle_start, timeout=120)
                for iid in new:
                    bus.wait(f"phoenix/lifecycle/step/{iid}", after=cycle_start, timeout=60,
                             where=lambda d: d.get("step") == "secrets")
                alb.wait_routed(lambda routed: routed == new, timeout=60)
            time.sleep(1)
            retired_s = time.time() - cycle_start
        display.enabled = False
        after = status(system)
        print("\n== rebuild.status after the cycle")
        print_status(after)

        # ---------------------------------------------------------------- the summary
        timeline = cloud.timeline(group)[max(timeline_from - 1, 0):]
        routed_history = [len(ids) for _, ids in alb.history[max(alb_from - 1, 0):]]
        calls_after = cloud.api_calls()
        calls = sum(calls_after.values()) - sum(calls_before.values())
        launches = lambda d: d.get("transition", LAUNCHING) == LAUNCHING  # noqa: E731
        abandoned = bus.matching("phoenix/lifecycle/abandoned/*", cycle_start, launches)
        continued = bus.matching("phoenix/lifecycle/continued/*", cycle_start, launches)
        latency = []
        for iid in new:
            got = bus.first(f"phoenix/lifecycle/launching/{iid}")
            cont = bus.first(f"phoenix/lifecycle/continued/{iid}")
            if got and cont:
                latency.append(cont[0] - got[0])
        scan_result = scan(secret, [root / "master", root / "instances", root / "alb"],
                           [(tag, data) for _, tag, data in bus.events],
                           {"localcloud records": json.dumps([cloud.instances(), cloud.api_calls(),
                                                               cloud.timeline(group)], default=str)})
        result.update({
            "rebuild_returncode": done.returncode,
            "rebuild_result": bool(finished) and not failed,
            "replaced": (finished[-1][2].get("replaced") if finished else 0),
            "abandoned": len(abandoned), "continued": len(continued),
            "old": sorted(old), "new": sorted(new), "still_old": sorted(old & set(instances(aws, group))),
            "oldest_age_before_s": max(ages(day_later) or [0]), "oldest_age_after_s": max(ages(after) or [0]),
            "min_in_service": min(e["in_service"] for e in timeline) if timeline else None,
            "min_routed": min(routed_history) if routed_history else None,
            "cycle_s": round(cycle_seconds, 1), "cycle_until_retired_s": round(retired_s, 1),
            "provision_median_s": round(statistics.median(latency), 1) if latency else None,
            "aws_calls_in_cycle": calls,
            "requests": {"ok": traffic.ok, "failed": traffic.failed, "failures": traffic.failures[:5],
                         "served_by": dict(traffic.served_by)},
            "secret_scan": {k: (len(v) if k == "hits" else v) for k, v in scan_result.items()},
            "secret_hits": scan_result["hits"],
        })
        if done.returncode != 0:
            print(f"orch.rebuild returned {done.returncode}: {(done.stdout + done.stderr)[-3000:]}", file=sys.stderr)
        print_summary(result)
    finally:
        display.enabled = False
        print("\n== stopping everything this demo started ...")
        system.stop()
        left = system.leftovers()
        result["leftovers"] = left
        result["total_s"] = round(time.time() - began, 1)
        print("   no process left" if not left else f"   STILL RUNNING: {left}")
        print(f"   logs: {system.log_file} (master), {root / 'instances'}/<id>/ (each minion's log and "
              f"console.log), {root / 'alb'} (the load balancer's NGINX)")
        print(f"   total {result['total_s']:.0f} s")
    return result


def status(system: Any) -> dict[str, Any]:
    from devtools.fleet import rebuild_status

    return rebuild_status(system, STACK)


def print_summary(r: dict[str, Any]) -> None:
    req = r["requests"]
    scan_ = r["secret_scan"]
    print("\n== summary")
    print(f"  rebuild                 {'succeeded' if r['rebuild_result'] else 'FAILED'} "
          f"(salt-run exit {r['rebuild_returncode']})")
    print(f"  replaced                {r['replaced']} of {r['instances']} (old instances left: {len(r['still_old'])})")
    print(f"  abandoned               {r['abandoned']}")
    print(f"  oldest instance         {hours(r['oldest_age_before_s'])} before, {hours(r['oldest_age_after_s'])} after")
    print(f"  minimum capacity        {r['min_in_service']} InService, {r['min_routed']} behind the load balancer "
          f"(desired {r['instances']})")
    print(f"  duration                {r['cycle_s']:.0f} s orch.rebuild, {r['cycle_until_retired_s']:.0f} s until "
          f"the last old instance retired; notification -> CONTINUE median {r['provision_median_s']} s")
    print(f"  requests via the ALB    {req['ok'] + req['failed']} sent, {req['failed']} failed")
    print(f"  secret scan             {scan_['files']} files, {scan_['log_lines']} log lines, {scan_['events']} "
          f"events searched: {scan_['hits']} hits")
    for hit in r["secret_hits"][:5]:
        print(f"    {hit}")


def outcome_ok(r: dict[str, Any]) -> bool:
    allow = r.get("allowlist", {})
    return bool(r.get("rebuild_result") and r.get("replaced") == r["instances"] and r.get("abandoned") == 0
                and not r.get("still_old") and r.get("requests", {}).get("failed") == 0
                and allow.get("/console") == [200, 404] and allow.get(DEBUGGER) == [200, 404]
                and r.get("secret_scan", {}).get("hits") == 0 and not r.get("leftovers"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=3, help="instances in the group (default 3)")
    parser.add_argument("--batch", type=int, default=1, help="rolling update batch size (default 1)")
    parser.add_argument("--logs", help="write the run's files here (default: a new phoenix-demo-* folder in the temporary directory)")
    parser.add_argument("--json", help="also write the outcome as JSON to this file")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the fleet (default 300)")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started has been stopped", file=sys.stderr)
        return 130
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    ok = outcome_ok(result)
    print("\nDEMO OK" if ok else "\nDEMO FAILED: see the summary above and the logs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
