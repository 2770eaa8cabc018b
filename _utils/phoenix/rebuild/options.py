"""Rebuild settings (``phoenix:rebuild`` in config/pillar, overridden by keyword arguments)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from phoenix.rebuild.errors import BadRequest

STRATEGIES = ("cloudformation", "instance_refresh")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(value: Any, name: str = "duration") -> float:
    """Seconds from ``90``, ``"90"``, ``"90s"``, ``"15m"``, ``"24h"``, ``"1d"`` or ``"1h30m"``.

    Raises :class:`BadRequest` naming ``name`` for anything else, or a negative value.
    """
    if isinstance(value, bool):
        raise BadRequest(f"{name}: expected a duration such as 24h or 3600, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise BadRequest(f"{name}: must not be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", text)
        if parts and re.fullmatch(r"(\s*\d+(?:\.\d+)?\s*[smhdw]?\s*)+", text):
            if len(parts) > 1 and any(unit == "" for _, unit in parts):
                raise BadRequest(f"{name}: every part of {value!r} needs a unit (s, m, h, d, w)")
            return float(sum(float(n) * _UNITS[u or "s"] for n, u in parts))
    raise BadRequest(f"{name}: expected a duration such as 24h, 90m or 3600, got {value!r}")


def format_duration(seconds: float | None) -> str:
    """``93784`` -> ``"1d2h3m4s"``; ``None`` -> ``"-"``."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


@dataclass(frozen=True)
class RebuildOptions:
    """Everything a cycle needs besides the target. All durations are seconds."""

    strategy: str = "cloudformation"
    max_age: float = 24 * 3600.0
    timestamp_parameter: str = "RebuildTimestamp"
    poll_initial: float = 2.0
    poll_max: float = 30.0
    poll_factor: float = 2.0
    #: None: derived from the group's size, batches, the LAUNCHING hook's timeout and recorded cycles
    deadline: float | None = None
    cancel_on_deadline: bool = True
    #: how long to keep watching a cancelled update's rollback before reporting it as still running
    #: (None: derived like the deadline, for the batches already replaced)
    rollback_wait: float | None = None
    require_launch_hook: bool = True
    min_healthy_percentage: int = 90
    instance_warmup: float = 0.0
    heartbeat: float = 60.0
    # -- the guarantee (schedule.py): start a cycle when the oldest instance would pass max_age before
    #    the next check could finish one: oldest age + check_interval + check_splay + expected cycle + margin
    check_interval: float = 3600.0
    check_splay: float = 300.0
    margin: float = 6 * 3600.0
    #: expected seconds per batch before any cycle was recorded (None: hook timeout + pause + launch allowance)
    batch_estimate: float | None = None
    # -- failure handling: abandoned launches tolerated before the cycle cancels the update
    max_abandons: int = 1
    max_abandons_first_batch: int = 0
    #: keep the group's current DesiredCapacity through a cloudformation update (see trigger.py)
    keep_capacity: bool = True
    # -- early rebuild (phoenix.patches.lag): cycle when an instance has had a security update pending this
    #    long (reported through the mine by phoenix_patches.pending), at most once per threshold
    security_rebuild: bool = True
    security_threshold: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise BadRequest(f"strategy: unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.poll_initial <= 0 or self.poll_max < self.poll_initial or self.poll_factor < 1:
            raise BadRequest(
                "poll settings: need 0 < poll_initial <= poll_max and poll_factor >= 1, got "
                f"{self.poll_initial}/{self.poll_max}/{self.poll_factor}"
            )
        if self.deadline is not None and self.deadline <= 0:
            raise BadRequest(f"deadline: must be positive, got {self.deadline}")
        if self.check_interval <= 0:
            raise BadRequest(f"check_interval: must be positive, got {self.check_interval}")
        if self.max_abandons < 0 or self.max_abandons_first_batch < 0:
            raise BadRequest("max_abandons / max_abandons_first_batch: must be 0 or more, got "
                             f"{self.max_abandons}/{self.max_abandons_first_batch}")
        if self.security_threshold <= 0:
            raise BadRequest(f"security_threshold: must be positive, got {self.security_threshold}")
        if not 0 <= self.min_healthy_percentage <= 100:
            raise BadRequest(f"min_healthy_percentage: must be 0-100, got {self.min_healthy_percentage}")


_DURATION_KEYS = {"max_age", "poll_initial", "poll_max", "deadline", "instance_warmup", "heartbeat", "check_interval",
                  "check_splay", "margin", "batch_estimate", "rollback_wait", "security_threshold"}
_BOOL_KEYS = {"cancel_on_deadline", "require_launch_hook", "keep_capacity", "security_rebuild"}
_INT_KEYS = {"min_healthy_percentage", "max_abandons", "max_abandons_first_batch"}
#: keys of ``phoenix:rebuild`` that are not options of a cycle (targets, schedule)
NON_OPTION_KEYS = {"stack", "group", "stacks", "schedule", "targets", "splay", "force", "fix_policy", "takeover"}


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise BadRequest(f"{key}: expected true or false, got {value!r}")


def options_from(*sources: Mapping[str, Any] | None) -> RebuildOptions:
    """Merge ``phoenix:rebuild``-shaped dicts (later wins, ``None`` ignored) into :class:`RebuildOptions`."""
    known = {f.name for f in fields(RebuildOptions)}
    values: dict[str, Any] = {}
    for source in sources:
        if not source:
            continue
        for key, value in source.items():
            if value is None or key in NON_OPTION_KEYS:
                continue
            if key not in known:
                raise BadRequest(f"unknown rebuild setting {key!r} (known: {', '.join(sorted(known))})")
            if key in _DURATION_KEYS:
                value = parse_duration(value, key)
            elif key in _BOOL_KEYS:
                value = _bool(key, value)
            elif key in _INT_KEYS:
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise BadRequest(f"{key}: expected a whole number, got {value!r}") from None
            elif key == "poll_factor":
                value = float(value)
            else:
                value = str(value)
            values[key] = value
    return RebuildOptions(**values)


def with_options(opts: RebuildOptions, **overrides: Any) -> RebuildOptions:
    """``opts`` with non-``None`` overrides (same parsing as :func:`options_from`)."""
    merged = options_from({k: v for k, v in overrides.items() if v is not None})
    changed = {k: getattr(merged, k) for k in overrides if overrides[k] is not None}
    return replace(opts, **changed)
