"""Pending security updates on this instance (Phoenix): which, and since when.

The fleet's minions publish :func:`pending` through Salt's mine, so the rebuild controller sees every
instance's patch lag and cycles the group early when one has had a security update pending longer than
``phoenix:rebuild:security_threshold`` (6 h). Pillar (``phoenix:patches``)::

    mine_functions:
      phoenix_patches.pending: []
    mine_interval: 60            # minutes: refresh as often as the rebuild check runs
    phoenix:
      patches:
        source: apt              # the distribution's tools (default); "feed": the simulated feed
        refresh: true            # apt-get update before asking (apt)
        feed: /srv/phoenix/security-feed.json   # feed file (feed)
        state_dir: null          # where first-seen times / feed installs are kept (<cachedir>/phoenix)
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import phoenix.saltglue
    from phoenix.patches import apt, feed, report

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - reported by __virtual__
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

log = logging.getLogger(__name__)

__virtualname__ = "phoenix_patches"
SOURCES = ("apt", "feed")


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"phoenix_patches: the phoenix package must be importable: {IMPORT_ERROR}. Sync _utils "
                       "(saltutil.sync_all) or pip install phoenix-salt")
    return __virtualname__


def _settings(**overrides: Any) -> dict[str, Any]:
    from salt.exceptions import SaltInvocationError

    try:
        conf = phoenix.saltglue.settings(__opts__, __pillar__, "phoenix:patches",
                                         {k: v for k, v in overrides.items() if not k.startswith("__")})
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None
    source = conf.get("source", "apt")
    if source not in SOURCES:
        raise SaltInvocationError(f"phoenix:patches:source: unknown source {source!r}; use apt or feed")
    if source == "feed" and not conf.get("feed"):
        raise SaltInvocationError("phoenix:patches:feed: source 'feed' needs the path of the feed file")
    conf["source"] = source
    return conf


def _state_dir(conf: dict[str, Any]) -> Path:
    return Path(conf.get("state_dir") or Path(__opts__["cachedir"]) / "phoenix")


def _feed(conf: dict[str, Any]) -> dict[str, Any]:
    from salt.exceptions import CommandExecutionError

    try:
        return feed.load(conf["feed"])
    except feed.FeedError as exc:
        raise CommandExecutionError(str(exc)) from None


def pending(**kwargs: Any) -> dict[str, Any]:
    """
    The security updates pending on this instance and since when: ``{source, checked_at, count,
    oldest_since, pending: [{package, installed, candidate, since, origin|advisory}]}``.

    With ``source: apt`` the list is what ``apt-get --simulate dist-upgrade`` would install from a
    ``*-security`` suite (after ``apt-get update`` unless ``refresh: false``), and ``since`` is when a check
    on this instance first saw that version pending (so run it at least as often as the rebuild check,
    e.g. through ``mine_interval``). With ``source: feed`` it is what the simulated feed's advisories fix
    and this instance has not installed, since each advisory's publication.

    Keyword arguments override ``phoenix:patches`` (``source``, ``feed``, ``refresh``, ``state_dir``).

    CLI Example:

    .. code-block:: bash

        salt-call phoenix_patches.pending
        salt '*' mine.get 'i-*' phoenix_patches.pending
        salt-call phoenix_patches.pending source=feed feed=/srv/phoenix/security-feed.json
    """
    from salt.exceptions import CommandExecutionError

    conf = _settings(**kwargs)
    now = datetime.now(timezone.utc)
    started = time.monotonic()
    if conf["source"] == "apt":
        try:
            found = apt.pending(refresh=bool(conf.get("refresh", True)))
        except RuntimeError as exc:
            raise CommandExecutionError(str(exc)) from None
        items = report.observe(found, _state_dir(conf) / "apt-first-seen.json", now)
    else:
        items = feed.pending(_feed(conf), feed.read_installed(_state_dir(conf) / "feed-installed.json"))
    out = report.build(conf["source"], items, now)
    log.info("phoenix_patches: %d security update(s) pending (oldest since %s), checked in %.1fs",
             out["count"], out["oldest_since"] or "-", time.monotonic() - started)
    return out


def simulate_upgrade(**kwargs: Any) -> dict[str, Any]:
    """
    The simulated feed's stand-in for ``apt-get dist-upgrade``: install every version the feed's archive
    offers on this instance (what provisioning's OS-update step does on a real system). Only with
    ``source: feed``; with ``test=True`` it reports what would change.

    Returns ``{result, changes: {package: {old, new}}, comment}``.

    CLI Example:

    .. code-block:: bash

        salt-call phoenix_patches.simulate_upgrade
        salt-call phoenix_patches.simulate_upgrade test=True
    """
    from salt.exceptions import SaltInvocationError

    test = bool(kwargs.pop("test", __opts__.get("test", False)))
    conf = _settings(**kwargs)
    if conf["source"] != "feed":
        raise SaltInvocationError("phoenix_patches.simulate_upgrade works on the simulated feed only "
                                  "(phoenix:patches:source: feed); real systems upgrade with pkg.upgrade")
    data = _feed(conf)
    path = _state_dir(conf) / "feed-installed.json"
    if test:
        installed = feed.read_installed(path)
        changes = {p: {"old": installed.get(p), "new": v} for p, v in data["packages"].items()
                   if installed.get(p) != v}
        return {"result": None if changes else True, "changes": changes,
                "comment": f"{len(changes)} package(s) would be upgraded"}
    changes = feed.upgrade(data, path)
    return {"result": True, "changes": changes, "comment": f"{len(changes)} package(s) upgraded"}
