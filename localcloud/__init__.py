"""localcloud: a local stand-in for one AWS region (moto + lifecycle, rolling-update, instance-refresh
and stack-policy simulators) behind a single endpoint on 127.0.0.1. For tests and demos only."""

from localcloud.agents import InstanceAgent, SubprocessAgent
from localcloud.clock import Clock
from localcloud.cloud import LocalCloud

__all__ = ["Clock", "InstanceAgent", "LocalCloud", "SubprocessAgent"]
