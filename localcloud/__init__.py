"""localcloud: a local stand-in for one AWS region (moto + lifecycle, rolling-update, instance-refresh
and stack-policy simulators) behind a single endpoint on 127.0.0.1. For tests and demos only."""

from typing import Any

__all__ = ["Clock", "InstanceAgent", "LocalCloud", "SubprocessAgent"]

_WHERE = {"Clock": "localcloud.clock", "InstanceAgent": "localcloud.agents", "SubprocessAgent": "localcloud.agents",
          "LocalCloud": "localcloud.cloud"}


def __getattr__(name: str) -> Any:
    """Import on first use, so ``phoenix-localcloud --help`` works without moto (the ``localcloud`` extra)."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'localcloud' has no attribute {name!r}")
