"""The deployed commit (Phoenix): read the wanted SHA from S3, deploy exactly that commit, show the record.

Thin wrapper over :mod:`phoenix.provision.commit`. Settings: ``phoenix:deploy`` (config < pillar <
keyword arguments)::

    phoenix:
      deploy:
        bucket: web-releases              # S3 object holding the SHA to deploy
        key: web/deployed-commit
        repository: https://git.example.com/web.git   # no credentials in the URL
        target: /srv/web/app              # the checkout (relative paths: under the minion's root_dir)
        record: /var/lib/phoenix/deployed_commit.json
        token_secret: deploy_token        # name under phoenix:secrets:ssm (compiled by the phoenix_secrets
                                          # ext_pillar only during the provisioning window); omit: no token
        auth_scheme: bearer               # or basic (username below)
        username: x-access-token
        git: git
        timeout: 300

The token is read from this minion's in-memory pillar (``phoenix:secrets:values:<token_secret>``) by the
function itself, so it is never an argument, never in rendered SLS, the state cache, a state return or an
event; git receives it through its environment only.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

try:
    import phoenix.aws
    import phoenix.provision.commit as _commit
    import phoenix.saltglue
    from phoenix.provision.errors import ProvisionError, ProvisionInputError

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - reported by __virtual__
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "deployed_commit"

DEFAULTS = {"record": "/var/lib/phoenix/deployed_commit.json", "auth_scheme": "bearer",
            "username": "x-access-token", "git": "git", "timeout": 300}


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"deployed_commit: the phoenix package must be importable: {IMPORT_ERROR}. Sync _utils "
                       "(saltutil.sync_all) or pip install phoenix-salt")
    return __virtualname__


def _settings(overrides: dict[str, Any]) -> dict[str, Any]:
    try:
        merged = phoenix.saltglue.settings(__opts__, __pillar__, "phoenix:deploy",
                                           {k: v for k, v in overrides.items() if not k.startswith("__")})
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None
    conf = {**DEFAULTS, **merged}
    root = __opts__.get("root_dir") or "/"
    for key in ("target", "record"):  # relative paths are under the minion's root_dir (/ in production)
        if conf.get(key) and not os.path.isabs(str(conf[key])):
            conf[key] = os.path.join(root, str(conf[key]))
    return conf


def _raise(exc: Exception) -> None:
    if isinstance(exc, ProvisionInputError):
        raise SaltInvocationError(str(exc)) from None
    raise CommandExecutionError(str(exc)) from None


def _token(name: str | None) -> str | None:
    """The deploy token from the in-memory pillar compiled by ``phoenix_secrets`` (never from arguments)."""
    if not name:
        return None
    values = phoenix.saltglue.section(__pillar__, "phoenix:secrets:values")
    value = values.get(name)
    if not value:
        raise CommandExecutionError(
            f"{_commit.STEP}: the secret {name!r} (phoenix:deploy:token_secret) is not in this minion's pillar: "
            "the secrets window is closed (the instance has no in-flight LAUNCHING action or is not "
            "Pending:Wait) or the phoenix_secrets ext_pillar is not configured on the master")
    return str(value)


def wanted(bucket: str | None = None, key: str | None = None, **kwargs: Any) -> str:
    """
    The commit SHA that provisioning must deploy, read from ``s3://<bucket>/<key>``.

    bucket / key
        Default ``phoenix:deploy:bucket`` / ``phoenix:deploy:key``.

    A missing or unreadable object, or content that is not a full SHA, raises an error whose message is
    the ABANDON reason.

    CLI Example:

    .. code-block:: bash

        salt-call deployed_commit.wanted
        salt-call deployed_commit.wanted bucket=web-releases key=web/deployed-commit
    """
    conf = _settings({"bucket": bucket, "key": key})
    aws = phoenix.saltglue.aws(__opts__, __pillar__, {k: v for k, v in kwargs.items()
                                                      if k in phoenix.aws.SETTING_KEYS})
    try:
        return _commit.wanted(aws, conf.get("bucket"), conf.get("key"))
    except ProvisionError as exc:
        _raise(exc)


def recorded(record: str | None = None) -> dict[str, Any]:
    """
    The record of the last deploy on this machine (``{}`` when nothing was deployed yet).

    CLI Example:

    .. code-block:: bash

        salt-call deployed_commit.recorded
    """
    conf = _settings({"record": record})
    return _commit.read_record(conf["record"]) or {}


def deploy(commit: str | None = None, test: bool | None = None, **kwargs: Any) -> dict[str, Any]:
    """
    Deploy exactly ``commit`` (default: :func:`wanted`) from ``phoenix:deploy:repository`` into
    ``phoenix:deploy:target`` and write the record. The deploy token, if configured, comes from pillar.

    Returns ``{commit, old, changed, source, target, record, seconds}`` (no secret).

    CLI Example:

    .. code-block:: bash

        salt-call deployed_commit.deploy
        salt-call deployed_commit.deploy commit=0123456789abcdef0123456789abcdef01234567
        salt-call deployed_commit.deploy test=True
    """
    start = time.monotonic()
    aws_over = {k: kwargs.pop(k) for k in list(kwargs) if k in phoenix.aws.SETTING_KEYS}
    conf = _settings(kwargs)
    if test is None:
        test = bool(__opts__.get("test", False))
    try:
        source = "argument"
        if not commit:
            aws = phoenix.saltglue.aws(__opts__, __pillar__, aws_over)
            bucket, key = _commit.location(conf.get("bucket"), conf.get("key"))
            commit = _commit.wanted(aws, bucket, key)
            source = f"s3://{bucket}/{key}"
        commit = _commit.validate_sha(commit, "the commit argument")
        repository = _commit.check_repository(conf.get("repository"))
        if not conf.get("target"):
            raise ProvisionInputError(_commit.STEP, "phoenix:deploy:target is not set: name the directory "
                                                    "of the checkout")
        old = _commit.head(conf["target"], conf["git"])
        current = _commit.read_record(conf["record"]) or {}
        out = {"commit": commit, "old": old, "source": source, "target": str(conf["target"]),
               "record": str(conf["record"])}
        if test:
            out["changed"] = old != commit or current.get("commit") != commit
            out["seconds"] = _commit.elapsed(start)
            return out
        needs_fetch = not _commit.has_commit(conf["target"], commit, conf["git"])
        token = _token(conf.get("token_secret")) if needs_fetch else None
        result = _commit.deploy(repository, conf["target"], commit, token, auth_scheme=conf["auth_scheme"],
                                username=conf["username"], git=conf["git"], timeout=float(conf["timeout"]))
        changed = result["fetched"] or current.get("commit") != commit
        if changed:
            _commit.record(conf["record"], commit, repository, source, str(conf["target"]))
    except ProvisionError as exc:
        _raise(exc)
    out.update(changed=changed, seconds=_commit.elapsed(start))
    log.info("deployed commit %s into %s (%s, %.2f s)", commit, conf["target"],
             "changed" if changed else "already there", out["seconds"])
    return out
