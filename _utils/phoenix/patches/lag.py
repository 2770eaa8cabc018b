"""Controller side: each instance's patch lag, and whether the group must be cycled early.

An instance's **patch lag** is how long its oldest pending security update has been pending (0 with
none). The group is cycled early when some instance's lag reaches ``threshold`` (default 6 h), at most
once per ``threshold``: not when a cycle started less than ``threshold`` ago (the group's recorded
cycles, :mod:`phoenix.rebuild.history`), so an update that a fresh instance does not fix either cannot
make the group rebuild over and over. New instances apply every update while they are provisioned, so
after a cycle no instance has a pending update.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

MINE_FUNCTION = "phoenix_patches.pending"


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def instance_lag(report: Any, now: datetime) -> dict[str, Any]:
    """The patch columns of one instance from its mine report (``None``: it has not reported)."""
    if not isinstance(report, Mapping) or "pending" not in report:
        return {"patch_reported": False, "security_pending": None, "pending_since": None,
                "patch_lag_seconds": None, "patch_checked_at": None}
    since = _time(report.get("oldest_since"))
    lag = max(0.0, (now - since).total_seconds()) if since else 0.0
    return {"patch_reported": True, "security_pending": int(report.get("count") or len(report["pending"])),
            "pending_since": report.get("oldest_since"), "patch_lag_seconds": round(lag, 1),
            "patch_checked_at": report.get("checked_at"),
            "pending_packages": sorted({p.get("package", "?") for p in report["pending"]})}


def last_cycle_start(entries: Iterable[Any]) -> float | None:
    """Epoch seconds when the most recent recorded cycle started (history entries: ``end``, ``seconds``)."""
    starts = [e.end - e.seconds for e in entries]
    return max(starts) if starts else None


def assess(rows: list[Mapping[str, Any]], now: datetime, threshold: float, entries: Iterable[Any],
           enabled: bool = True) -> dict[str, Any]:
    """Whether pending security updates make a cycle due now: ``{due, reason, worst_lag_seconds,
    instances (over the threshold), unreported, threshold_seconds, last_cycle_start}``."""
    lagging = sorted((r for r in rows if (r.get("patch_lag_seconds") or 0) >= threshold),
                     key=lambda r: -(r.get("patch_lag_seconds") or 0))
    worst = max((r.get("patch_lag_seconds") or 0 for r in rows), default=0.0)
    unreported = [r["instance_id"] for r in rows if not r.get("patch_reported")]
    started = last_cycle_start(entries)
    recent = started is not None and now.timestamp() - started < threshold
    out = {"enabled": enabled, "due": False, "threshold_seconds": threshold, "worst_lag_seconds": worst,
           "instances": [r["instance_id"] for r in lagging], "unreported": unreported,
           "last_cycle_start": (datetime.fromtimestamp(started, tz=timezone.utc).isoformat() if started else None)}
    if not enabled:
        out["reason"] = "early rebuild for security updates is off (phoenix:rebuild:security_rebuild)"
    elif not lagging:
        out["reason"] = (f"no instance has had a security update pending for {_fmt(threshold)} "
                         f"(worst lag {_fmt(worst)})")
    elif recent:
        out["reason"] = (f"{len(lagging)} instance(s) lag {_fmt(threshold)} or more behind security updates, "
                         f"but a cycle started {_fmt(now.timestamp() - started)} ago: at most one early cycle "
                         f"per {_fmt(threshold)}")
    else:
        first = lagging[0]
        out["due"] = True
        out["reason"] = (f"{first['instance_id']} has had security updates pending for "
                         f"{_fmt(first['patch_lag_seconds'])} ({', '.join(first.get('pending_packages', []))}; "
                         f"threshold {_fmt(threshold)})"
                         + (f", and {len(lagging) - 1} more instance(s)" if len(lagging) > 1 else ""))
    return out


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
