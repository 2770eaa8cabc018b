"""phoenix-localcloud (or python -m localcloud): one local AWS region on 127.0.0.1, for tests and demos.

Starts localcloud, prints its endpoint (one line) on stdout, runs until SIGTERM or SIGINT, then stops
cleanly (background work, HTTP server, instance agents, moto state). Needs the ``localcloud`` extra
(moto): ``pip install 'phoenix-salt[localcloud]'``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import signal
import sys
import threading
from typing import Any

DESCRIPTION = ("One local AWS region on 127.0.0.1 for tests and demos (moto plus lifecycle hooks, rolling "
               "updates, instance refresh and stack policies). Prints its endpoint, then runs until stopped "
               "(SIGTERM or Ctrl-C). Never for production.")
MISSING_EXTRA = ("{prog} needs moto, which comes with the localcloud extra: pip install 'phoenix-salt[localcloud]' "
                 "({error})")


def _prog() -> str:
    name = os.path.basename(sys.argv[0] or "")
    return "python -m localcloud" if name in ("__main__.py", "-m", "") else name


def load_agent(spec: str) -> Any:
    """``module:attr`` naming an agent object, or a class/factory called without arguments."""
    from localcloud.agents import InstanceAgent

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"--agent wants MODULE:ATTR, got {spec!r}")
    target = getattr(importlib.import_module(module_name), attr)
    is_factory = isinstance(target, type) or (callable(target) and not isinstance(target, InstanceAgent))
    agent = target() if is_factory else target
    if not isinstance(agent, InstanceAgent):
        raise SystemExit(f"--agent {spec}: {agent!r} has no start(instance_id)/stop(instance_id)")
    return agent


def main(argv: list[str] | None = None) -> int:
    """Run localcloud until signalled."""
    prog = _prog()
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--boot-seconds", type=float, default=1.0,
                        help="virtual seconds an instance spends in Pending before its hooks/InService")
    parser.add_argument("--clock-rate", type=float, default=1.0, help="virtual seconds per real second")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--log-level", default="WARNING")
    agents = parser.add_mutually_exclusive_group()
    agents.add_argument("--agent", metavar="MODULE:ATTR",
                        help="instance agent: an object with start/stop(instance_id), or a factory returning one")
    agents.add_argument("--agent-command", metavar="CMD",
                        help="run CMD plus the instance id as one process per instance (stopped with it)")
    args = parser.parse_args(argv)
    try:  # only now: --help works without the extra
        from localcloud.agents import InstanceAgent, SubprocessAgent
        from localcloud.cloud import LocalCloud
    except ImportError as exc:
        print(MISSING_EXTRA.format(prog=prog, error=exc), file=sys.stderr)
        return 1
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent: InstanceAgent | None = None
    if args.agent:
        agent = load_agent(args.agent)
    elif args.agent_command:
        agent = SubprocessAgent(shlex.split(args.agent_command))
    cloud = LocalCloud(boot_seconds=args.boot_seconds, clock_rate=args.clock_rate, region=args.region,
                       port=args.port, agent=agent)
    cloud.start()
    try:
        print(cloud.endpoint, flush=True)
        while not done.wait(0.5):
            pass
    finally:
        cloud.stop()
    print("localcloud stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
