"""Settings of the provisioning loop: ``phoenix:lifecycle`` in the master config (pillar can override the
per-run ones), merged by :func:`phoenix.saltglue.settings`::

    phoenix:
      lifecycle:
        queue_url: https://sqs.eu-west-1.amazonaws.com/123456789012/web-lifecycle  # the hooks' SQS target
        groups: [web-*]              # Auto Scaling groups Phoenix provisions (names or shell patterns)
        account: "123456789012"      # optional: refuse notifications from another account
        ledger: /var/cache/salt/master/phoenix/lifecycle.sqlite   # default: <cachedir>/phoenix/...
        identity_certificate: /etc/salt/phoenix/aws-identity-eu-west-1.pem   # path or PEM text
        identity_max_age: 900        # seconds: an identity document older than this is refused
        wait_seconds: 10             # SQS long poll
        visibility_timeout: 60       # seconds a received message stays hidden before redelivery
        key_timeout: 300             # provisioning: key accepted and minion answering
        highstate_timeout: 1800      # provisioning: the highstate
        health_timeout: 60           # provisioning: health check retries
        health:
          scheme: http
          port: 80
          path: /health              # must answer 200
          blocked: [/console, "/?__debugger__=yes&cmd=resource&f=style.css"]   # must answer 404
          request_timeout: 5
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

DEFAULT_BLOCKED = ("/console", "/?__debugger__=yes&cmd=resource&f=style.css")


@dataclass(frozen=True)
class HealthOptions:
    scheme: str = "http"
    port: int = 80
    path: str = "/health"
    blocked: tuple[str, ...] = DEFAULT_BLOCKED
    request_timeout: float = 5.0


@dataclass(frozen=True)
class LifecycleOptions:
    queue_url: str | None = None
    groups: tuple[str, ...] = ()
    account: str | None = None
    ledger: str | None = None
    identity_certificate: str | None = None
    identity_max_age: float = 900.0
    wait_seconds: int = 10
    visibility_timeout: int = 60
    key_timeout: float = 300.0
    highstate_timeout: float = 1800.0
    health_timeout: float = 60.0
    health: HealthOptions = field(default_factory=HealthOptions)

    def require_queue(self) -> str:
        if not self.queue_url:
            raise ValueError("phoenix:lifecycle:queue_url is not set: give the SQS queue your lifecycle hooks "
                             "notify (the engine's queue_url argument or the master config)")
        return self.queue_url

    def require_groups(self) -> tuple[str, ...]:
        if not self.groups:
            raise ValueError("phoenix:lifecycle:groups is empty: list the Auto Scaling groups (names or shell "
                             "patterns such as web-*) whose instances Phoenix provisions")
        return self.groups

    def certificate_pem(self) -> str:
        """The identity certificate's PEM text (from the file, or the setting itself)."""
        value = self.identity_certificate
        if not value:
            raise ValueError("phoenix:lifecycle:identity_certificate is not set: give the path of AWS's "
                             "instance identity certificate for your region (PEM)")
        if value.lstrip().startswith("-----BEGIN"):
            return value
        try:
            with open(value, encoding="ascii") as fh:
                return fh.read()
        except OSError as exc:
            raise ValueError(f"phoenix:lifecycle:identity_certificate: cannot read {value}: {exc}") from None


_NUMBERS = {"identity_max_age": float, "wait_seconds": int, "visibility_timeout": int, "key_timeout": float,
            "highstate_timeout": float, "health_timeout": float}


def _health(value: Any) -> HealthOptions:
    if value is None:
        return HealthOptions()
    if not hasattr(value, "get"):
        raise ValueError(f"phoenix:lifecycle:health must be a mapping, got {value!r}")
    known = {f.name for f in fields(HealthOptions)}
    unknown = sorted(set(value.keys()) - known)
    if unknown:
        raise ValueError(f"unknown setting phoenix:lifecycle:health:{unknown[0]} (known: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    try:
        if value.get("scheme") is not None:
            out["scheme"] = str(value["scheme"])
            if out["scheme"] not in ("http", "https"):
                raise ValueError(f"phoenix:lifecycle:health:scheme must be http or https, got {out['scheme']!r}")
        if value.get("port") is not None:
            out["port"] = int(value["port"])
        if value.get("path") is not None:
            out["path"] = str(value["path"])
        if value.get("blocked") is not None:
            out["blocked"] = tuple(str(p) for p in value["blocked"])
        if value.get("request_timeout") is not None:
            out["request_timeout"] = float(value["request_timeout"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"phoenix:lifecycle:health: {exc}") from None
    for path in (out.get("path", "/"), *out.get("blocked", ())):
        if not path.startswith("/"):
            raise ValueError(f"phoenix:lifecycle:health: path {path!r} must start with /")
    return HealthOptions(**out)


def options_from(section: Mapping[str, Any], cachedir: str | None = None) -> LifecycleOptions:
    """Build options from a merged ``phoenix:lifecycle`` dict; unknown keys are an error naming the key."""
    known = {f.name for f in fields(LifecycleOptions)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"unknown setting phoenix:lifecycle:{unknown[0]} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for key, value in section.items():
        if value is None or key == "health":
            continue
        if key in _NUMBERS:
            try:
                values[key] = _NUMBERS[key](value)
            except (TypeError, ValueError):
                raise ValueError(f"phoenix:lifecycle:{key} must be a number, got {value!r}") from None
        elif key == "groups":
            if isinstance(value, str):
                value = [value]
            values[key] = tuple(str(g) for g in value)
        else:
            values[key] = str(value)
    values["health"] = _health(section.get("health"))
    if not values.get("ledger") and cachedir:
        values["ledger"] = os.path.join(cachedir, "phoenix", "lifecycle.sqlite")
    return LifecycleOptions(**values)


__all__ = ["LifecycleOptions", "HealthOptions", "options_from", "DEFAULT_BLOCKED"]
