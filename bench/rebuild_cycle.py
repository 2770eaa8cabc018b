"""Benchmark: one rebuild cycle of N instances on localcloud (run on demand, not part of the test suite).

    PYTHONPATH=_utils:. python bench/rebuild_cycle.py [--instances 10] [--boot 1] [--provision 2]
        [--batch 1] [--strategy cloudformation|instance_refresh|both] [--poll-initial 0.5] [--poll-max 5]
    PYTHONPATH=_utils:. python bench/rebuild_cycle.py --virtual [--boot 60 --provision 300]
        (production polling 2s..30s on localcloud's virtual clock: realistic minutes per instance, run in seconds)

Prints, per strategy:
* AWS API calls the cycle made (counted at localcloud's endpoint, minus the simulated provisioner's
  CompleteLifecycleAction calls), in total and per replaced instance, by action;
* the cycle's wall time against the simulated boot + provisioning time on the critical path
  (ceil(N / batch) * (boot + provision)): the overhead ratio. 1.0 would mean Phoenix adds nothing.

The simulated provisioner watches localcloud's own records (no API calls) and completes each LAUNCHING
hook with CONTINUE ``--provision`` seconds after the instance reaches Pending:Wait.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO / "_utils", REPO):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

import boto3  # noqa: E402

from localcloud import LocalCloud  # noqa: E402
from phoenix.aws import AWS, settings_from  # noqa: E402
from phoenix.rebuild.cycle import run_cycle  # noqa: E402
from phoenix.rebuild.options import options_from  # noqa: E402

TEMPLATE = (REPO / "localcloud" / "templates" / "web-fleet.yaml").read_text()
PROVISIONER_ACTIONS = ("autoscaling:CompleteLifecycleAction",)


class Provisioner:
    """Completes each LAUNCHING hook ``seconds`` after Pending:Wait, watching localcloud's records."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.cloud: LocalCloud | None = None
        self.group: str | None = None
        self._stop = threading.Event()

    def start(self, instance_id: str) -> None:
        threading.Thread(target=self._run, args=(instance_id,), daemon=True).start()

    def stop(self, instance_id: str) -> None:
        pass

    def shutdown(self) -> None:
        self._stop.set()

    def _state(self, instance_id: str) -> str | None:
        assert self.cloud is not None
        for rec in self.cloud.instances(self.group):
            if rec["instance_id"] == instance_id:
                return rec["state"]
        return None

    def _run(self, instance_id: str) -> None:
        while not self._stop.is_set() and self._state(instance_id) in ("Pending", None):
            time.sleep(0.02)
        if self._stop.is_set() or self._state(instance_id) != "Pending:Wait":
            return
        time.sleep(self.seconds)
        assert self.cloud is not None
        client = boto3.client("autoscaling", endpoint_url=self.cloud.endpoint, region_name=self.cloud.region)
        client.complete_lifecycle_action(AutoScalingGroupName=self.group, LifecycleHookName="provision",
                                         InstanceId=instance_id, LifecycleActionResult="CONTINUE")


class VirtualProvisioner:
    """Completes each LAUNCHING hook ``seconds`` of virtual time after Pending:Wait (a localcloud tick hook)."""

    def __init__(self, cloud: LocalCloud, seconds: float) -> None:
        self.cloud = cloud
        self.seconds = seconds
        self.since: dict[str, float] = {}

    def __call__(self) -> None:
        now = self.cloud.clock.now()
        for rec in list(self.cloud.fleet.records.values()):
            if rec.state == "Pending:Wait" and "provision" in rec.tokens:
                start = self.since.setdefault(rec.instance_id, now)
                if now - start >= self.seconds:
                    self.cloud.fleet.complete(rec.group, "provision", "CONTINUE", instance_id=rec.instance_id)


def make_fleet(cloud: LocalCloud, provisioner: Provisioner, n: int, batch: int) -> str:
    cloud.reset()
    cfn = boto3.client("cloudformation", endpoint_url=cloud.endpoint, region_name=cloud.region)
    params = {"RebuildTimestamp": "initial", "DesiredCapacity": str(n), "MinSize": "1", "MaxSize": str(2 * n),
              "RollingMaxBatchSize": str(batch), "RollingMinInstancesInService": str(n - batch)}
    cfn.create_stack(StackName="bench", TemplateBody=TEMPLATE, Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="bench")["Stacks"][0]["Outputs"]}
    provisioner.group = outputs["GroupName"]
    deadline = time.monotonic() + 600
    while sum(1 for r in cloud.instances(provisioner.group) if r["state"] == "InService") < n:
        if time.monotonic() > deadline:
            raise SystemExit("the fleet did not come up")
        if getattr(provisioner, "virtual", False):
            cloud.advance(5)
        time.sleep(0.05)
    return provisioner.group


def run(strategy: str, args: argparse.Namespace, cloud: LocalCloud, provisioner: Provisioner) -> dict:
    group = make_fleet(cloud, provisioner, args.instances, args.batch)
    opts = options_from({"strategy": strategy, "poll_initial": args.poll_initial, "poll_max": args.poll_max,
                         "min_healthy_percentage": int(100 * (args.instances - args.batch)
                                                                           / args.instances)})
    aws = AWS(settings_from({"endpoint_url": cloud.endpoint, "region": cloud.region}))
    cloud.api_calls(reset=True)
    if args.virtual:
        def sleep(seconds: float) -> None:
            cloud.advance(seconds)
            time.sleep(0.03)
        t0 = cloud.clock.now()
        summary = run_cycle(aws, opts, stack="bench", fix_policy=True, sleep=sleep, monotonic=cloud.clock.now)
        wall = cloud.clock.now() - t0
    else:
        t0 = time.monotonic()
        summary = run_cycle(aws, opts, stack="bench", fix_policy=True)
        wall = time.monotonic() - t0
    calls = cloud.api_calls()
    cycle_calls = {k: v for k, v in calls.items() if k not in PROVISIONER_ACTIONS}
    total = sum(cycle_calls.values())
    replaced = max(summary["replaced"], 1)
    critical = math.ceil(args.instances / args.batch) * (args.boot + args.provision)
    return {"strategy": strategy, "group": group, "result": summary["result"], "replaced": summary["replaced"],
            "calls": cycle_calls, "total": total, "per_instance": total / replaced, "adapter_calls": aws.calls,
            "wall": wall, "critical": critical, "ratio": wall / critical, "polls": summary["polls"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--boot", type=float, default=1.0, help="simulated boot seconds (localcloud Pending)")
    parser.add_argument("--provision", type=float, default=2.0, help="simulated provisioning seconds (Pending:Wait)")
    parser.add_argument("--batch", type=int, default=1, help="MaxBatchSize (and 100%% - MinHealthyPercentage)")
    parser.add_argument("--strategy", default="both", choices=("cloudformation", "instance_refresh", "both"))
    parser.add_argument("--poll-initial", type=float, default=None, help="default 0.5 (2 with --virtual)")
    parser.add_argument("--poll-max", type=float, default=None, help="default 5 (30 with --virtual)")
    parser.add_argument("--virtual", action="store_true",
                        help="boot/provisioning in localcloud's virtual seconds; production polling by default")
    args = parser.parse_args(argv)
    if args.poll_initial is None:
        args.poll_initial = 2.0 if args.virtual else 0.5
    if args.poll_max is None:
        args.poll_max = 30.0 if args.virtual else 5.0
    strategies = ("cloudformation", "instance_refresh") if args.strategy == "both" else (args.strategy,)
    provisioner = Provisioner(args.provision)
    results = []
    with LocalCloud(boot_seconds=args.boot, agent=None if args.virtual else provisioner) as cloud:
        provisioner.cloud = cloud
        if args.virtual:
            provisioner.virtual = True  # type: ignore[attr-defined]
            cloud.tick_hooks.append(VirtualProvisioner(cloud, args.provision))
        try:
            for strategy in strategies:
                results.append(run(strategy, args, cloud, provisioner))
        finally:
            provisioner.shutdown()
    print(f"rebuild cycle of {args.instances} instances, batch {args.batch}, boot {args.boot}s + provisioning "
          f"{args.provision}s each{' (virtual seconds)' if args.virtual else ''}, polling "
          f"{args.poll_initial}s..{args.poll_max}s")
    for r in results:
        print(f"\n[{r['strategy']}] result={r['result']} replaced={r['replaced']} polls={r['polls']}")
        print(f"  AWS API calls by the cycle (counted at localcloud): {r['total']} "
              f"= {r['per_instance']:.1f} per replaced instance (adapter's own count: {r['adapter_calls']})")
        for action, n in sorted(r["calls"].items(), key=lambda kv: -kv[1]):
            print(f"    {n:4d}  {action}")
        print(f"  {'virtual' if args.virtual else 'wall'} time {r['wall']:.1f}s vs simulated boot+provisioning on the critical path "
              f"{r['critical']:.1f}s: overhead ratio {r['ratio']:.2f}")
    return 0 if all(r["result"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
