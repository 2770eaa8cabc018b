"""Pending security updates: APT's simulation parsed, the simulated feed, first-seen times, each
instance's patch lag and the early-rebuild decision (at most once per threshold)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from phoenix.patches import apt, feed, lag, report
from phoenix.rebuild.history import Entry

SIMULATION = """\
Reading package lists...
Building dependency tree...
Calculating upgrade...
The following packages will be upgraded:
  libssl3 openssl tzdata
Inst libssl3 [3.0.11-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.11-1~deb12u2] (3.0.15-1~deb12u1 Debian:12.8/stable, Debian-Security:12/stable-security [amd64])
Inst tzdata [2024a-0+deb12u1] (2024b-0+deb12u1 Debian:12.8/stable-updates [all])
Inst linux-image-6.1.0-28-amd64 (6.1.119-1 Debian-Security:12/stable-security [amd64])
Conf libssl3 (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst libc6 [2.35-0ubuntu3.6] (2.35-0ubuntu3.8 Ubuntu:22.04/jammy-security [amd64])
"""
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_apt_simulation_keeps_security_upgrades_only() -> None:
    found = apt.parse_simulation(SIMULATION)
    assert [(f["package"], f["installed"], f["candidate"]) for f in found] == [
        ("libssl3", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1"),
        ("openssl", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1"),
        ("linux-image-6.1.0-28-amd64", None, "6.1.119-1"),
        ("libc6", "2.35-0ubuntu3.6", "2.35-0ubuntu3.8"),
    ]
    assert found[0]["origin"].startswith("Debian-Security:12/stable-security")


def test_first_seen_survives_checks_and_forgets_what_was_fixed(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    first = report.observe(apt.parse_simulation(SIMULATION), seen, NOW)
    assert {p["since"] for p in first} == {"2026-12-01T12:00:00Z"}
    later = report.observe(apt.parse_simulation(SIMULATION)[:1], seen, NOW + timedelta(hours=3))
    assert later[0]["since"] == "2026-12-01T12:00:00Z"
    assert list(json.loads(seen.read_text())) == ["libssl3=3.0.15-1~deb12u1"]
    built = report.build("apt", later, NOW)
    assert built["count"] == 1 and built["oldest_since"] == "2026-12-01T12:00:00Z"


def test_feed_pending_until_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps({"packages": {"openssl": "3.0.15-1~deb12u1"}, "advisories": [
        {"id": "DSA-1", "package": "openssl", "version": "3.0.15-1~deb12u1", "published": "2026-12-01T06:00:00Z"}]}))
    data = feed.load(path)
    installed = tmp_path / "installed.json"
    assert feed.pending(data, feed.read_installed(installed))[0]["since"] == "2026-12-01T06:00:00Z"
    assert feed.upgrade(data, installed) == {"openssl": {"old": None, "new": "3.0.15-1~deb12u1"}}
    assert feed.pending(data, feed.read_installed(installed)) == []
    assert feed.version_key("3.0.15-1~deb12u1") > feed.version_key("3.0.11-1~deb12u2")
    assert feed.version_key("1.0~rc1") < feed.version_key("1.0")
    path.write_text('{"advisories": [{"id": "X"}]}')
    with pytest.raises(feed.FeedError, match="lacks package, version, published"):
        feed.load(path)


def rows(lags: dict[str, float | None]) -> list[dict]:
    out = []
    for iid, hours in lags.items():
        rep = None if hours is None else report.build(
            "feed", [{"package": "openssl", "since": report.iso(NOW - timedelta(hours=hours))}] if hours else [], NOW)
        out.append({"instance_id": iid, **lag.instance_lag(rep, NOW)})
    return out


def test_early_rebuild_when_a_lag_passes_the_threshold_once_per_threshold() -> None:
    six = 6 * 3600.0
    assert lag.assess(rows({"i-a": 5.9, "i-b": 0}), NOW, six, [])["due"] is False
    due = lag.assess(rows({"i-a": 6.5, "i-b": 0, "i-c": None}), NOW, six, [])
    assert due["due"] is True and due["instances"] == ["i-a"] and due["unreported"] == ["i-c"]
    assert "i-a has had security updates pending for 6h30m (openssl" in due["reason"]
    recent = Entry(end=int(NOW.timestamp()) - 3600, seconds=1800, batches=2, instances=2, outcome="ok")
    held = lag.assess(rows({"i-a": 6.5}), NOW, six, [recent])
    assert held["due"] is False and "at most one early cycle per 6h00m" in held["reason"]
    old = Entry(end=int(NOW.timestamp()) - 7 * 3600, seconds=600, batches=2, instances=2, outcome="ok")
    assert lag.assess(rows({"i-a": 6.5}), NOW, six, [old])["due"] is True
    assert lag.assess(rows({"i-a": 9}), NOW, six, [], enabled=False)["due"] is False
    assert rows({"i-x": 0})[0]["patch_lag_seconds"] == 0.0
