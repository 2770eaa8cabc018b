"""The report an instance gives about its pending security updates (what ``phoenix_patches.pending``
returns and the mine carries): ``{source, checked_at, count, oldest_since, pending: [...]}``."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with ``Z``."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def observe(found: list[dict[str, Any]], seen_path: Path, now: datetime) -> list[dict[str, Any]]:
    """Give each APT finding its ``since``: when a check on this instance first saw that candidate
    version pending (kept in ``seen_path``; entries no longer pending are dropped)."""
    try:
        seen = json.loads(seen_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        seen = {}
    stamp = iso(now)
    out, keep = [], {}
    for item in found:
        key = f"{item['package']}={item['candidate']}"
        keep[key] = seen.get(key, stamp)
        out.append({**item, "since": keep[key]})
    if keep != seen:
        seen_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = seen_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(keep, sort_keys=True))
        os.replace(tmp, seen_path)
    return sorted(out, key=lambda p: p["since"])


def build(source: str, pending: list[dict[str, Any]], checked_at: datetime) -> dict[str, Any]:
    """The report for ``pending`` (each with ``since``)."""
    return {"source": source, "checked_at": iso(checked_at), "count": len(pending),
            "oldest_since": min((p["since"] for p in pending), default=None), "pending": pending}
