"""A simulated security feed, for tests and the demo: a JSON file standing in for the distribution's
archive and its security advisories, and a per-instance record of what the instance has "installed".

Feed file (``phoenix:patches:feed``)::

    {"packages": {"openssl": "3.0.15-1~deb12u1", "nginx": "1.22.1-9"},
     "advisories": [{"id": "DSA-5801-1", "package": "openssl", "version": "3.0.15-1~deb12u1",
                     "published": "2026-12-01T12:00:00Z"}]}

``packages`` is what the archive offers now; an advisory says from which version a package is fixed
and when the fix was published. An instance's installed versions live in its own file; :func:`upgrade`
(the stand-in for ``apt-get dist-upgrade`` during provisioning) installs everything the archive offers.
An advisory is pending on an instance whose installed version of the package is older than the fix (or
missing), since the advisory's publication.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class FeedError(ValueError):
    """The feed file is missing or malformed."""


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a feed file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FeedError(f"phoenix:patches:feed: no such file {path}") from None
    except json.JSONDecodeError as exc:
        raise FeedError(f"phoenix:patches:feed: {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("packages", {}), dict) \
            or not isinstance(data.get("advisories", []), list):
        raise FeedError(f"phoenix:patches:feed: {path} needs an object with 'packages' (object) and "
                        "'advisories' (list)")
    for advisory in data.get("advisories", []):
        missing = [k for k in ("id", "package", "version", "published") if not advisory.get(k)]
        if missing:
            raise FeedError(f"phoenix:patches:feed: advisory {advisory!r} lacks {', '.join(missing)}")
        parse_time(advisory["published"], f"advisory {advisory['id']} published")
    return {"packages": dict(data.get("packages", {})), "advisories": list(data.get("advisories", []))}


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time (``Z`` allowed) as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise FeedError(f"{what}: {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def version_key(version: str) -> tuple[Any, ...]:
    """An ordering key for Debian-style versions good enough for the simulated feed (epoch, then the
    digit runs as numbers and the rest as text; ``~`` sorts before anything)."""
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    parts: list[Any] = [int(epoch) if epoch.isdigit() else 0]
    for token in re.findall(r"\d+|~|[^\d~]+", rest):
        parts.append((0, int(token)) if token.isdigit() else ((-1, "") if token == "~" else (1, token)))
    parts.append((-0.5, ""))  # the end sorts after "~" and before anything else
    return tuple(parts)


def pending(feed: dict[str, Any], installed: dict[str, str]) -> list[dict[str, Any]]:
    """Advisories not yet applied on an instance with ``installed`` versions, oldest first."""
    out = []
    for advisory in feed["advisories"]:
        have = installed.get(advisory["package"])
        if have is not None and version_key(have) >= version_key(advisory["version"]):
            continue
        out.append({"package": advisory["package"], "installed": have, "candidate": advisory["version"],
                    "advisory": advisory["id"], "since": parse_time(advisory["published"], advisory["id"])
                    .isoformat().replace("+00:00", "Z")})
    return sorted(out, key=lambda p: p["since"])


def read_installed(path: Path) -> dict[str, str]:
    """The instance's installed versions ({} before its first upgrade)."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}


def upgrade(feed: dict[str, Any], path: Path) -> dict[str, dict[str, str | None]]:
    """Install what the archive offers; returns ``{package: {old, new}}`` of what changed."""
    installed = read_installed(path)
    changes = {p: {"old": installed.get(p), "new": v} for p, v in feed["packages"].items() if installed.get(p) != v}
    installed.update(feed["packages"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(installed, sort_keys=True))
    os.replace(tmp, path)
    return changes
