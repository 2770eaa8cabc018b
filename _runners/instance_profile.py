"""Swap a new instance's launch instance profile for the group's runtime profile (Phoenix).

Settings ``phoenix:profile`` in the master config::

    phoenix:
      profile:
        runtime: web-runtime             # name or ARN of the restricted runtime instance profile
        revoke: true                     # deny the launch role's sessions of the instance issued before the swap
        margin_seconds: 60               # ... and this long after it (IMDS may still serve the old credentials)
        verify_timeout: 30               # seconds to wait for DescribeIamInstanceProfileAssociations to agree

A failed or unverifiable swap raises an error whose message is the ABANDON reason. Credentials fetched
under the launch role stay valid until they expire; ``revoke`` is the remedy (see
:mod:`phoenix.provision.profile`).
"""

from __future__ import annotations

from typing import Any

try:
    import phoenix.aws
    import phoenix.provision.profile as _profile
    import phoenix.saltglue
    from phoenix.provision.errors import ProvisionError, ProvisionInputError

    HAS_PHOENIX = True
except ImportError:  # pragma: no cover
    HAS_PHOENIX = False

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "instance_profile"
INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"


def __virtual__():
    return __virtualname__ if HAS_PHOENIX else (False, "instance_profile runner: phoenix is not importable")


def _check(instance_id: str) -> str:
    import re

    if not re.match(INSTANCE_ID, str(instance_id or "")):
        raise SaltInvocationError(f"instance_id {instance_id!r} is not an EC2 instance id (i-0123456789abcdef0)")
    return str(instance_id)


def _run(fn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ProvisionInputError as exc:
        raise SaltInvocationError(str(exc)) from None
    except (ProvisionError, phoenix.aws.PhoenixAWSError) as exc:
        raise CommandExecutionError(f"{_profile.STEP}: {exc}" if not isinstance(exc, ProvisionError) else str(exc)) \
            from None


def swap(instance_id: str, profile: str | None = None, revoke: Any = None, **kwargs: Any) -> dict[str, Any]:
    """
    Replace ``instance_id``'s launch profile with the runtime ``profile`` (default ``phoenix:profile:runtime``),
    verify it, and deny the launch role's earlier sessions of that instance.

    CLI Example:

    .. code-block:: bash

        salt-run instance_profile.swap i-0123456789abcdef0
        salt-run instance_profile.swap i-0123456789abcdef0 profile=web-runtime revoke=False
    """
    instance_id = _check(instance_id)
    conf = phoenix.saltglue.settings(__opts__, None, "phoenix:profile",
                                     {"runtime": profile, "revoke": revoke,
                                      **{k: v for k, v in kwargs.items() if k in ("verify_timeout", "margin_seconds")}})
    aws = phoenix.saltglue.aws(__opts__, None)
    out = _run(_profile.swap, aws, instance_id, conf.get("runtime"), revoke=_bool(conf.get("revoke", True)),
               verify_timeout=float(conf.get("verify_timeout", 30)),
               margin_seconds=float(conf.get("margin_seconds", 60)))
    phoenix.saltglue.fire(phoenix.saltglue.emitter(__opts__), f"phoenix/provision/{instance_id}/profile_swapped",
                          {k: v for k, v in out.items()})
    return out


def show(instance_id: str) -> dict[str, Any]:
    """
    The instance's current instance profile association (``{}`` when none).

    CLI Example:

    .. code-block:: bash

        salt-run instance_profile.show i-0123456789abcdef0
    """
    return _run(_profile.show, phoenix.saltglue.aws(__opts__, None), _check(instance_id))


def forget(instance_id: str, roles: Any = None) -> list[str]:
    """
    Remove the revocation policies of a terminated instance from the launch roles (all roles by default).

    CLI Example:

    .. code-block:: bash

        salt-run instance_profile.forget i-0123456789abcdef0
        salt-run instance_profile.forget i-0123456789abcdef0 roles='[web-launch]'
    """
    if isinstance(roles, str):
        roles = [r for r in roles.split(",") if r]
    return _run(_profile.forget, phoenix.saltglue.aws(__opts__, None), _check(instance_id), roles)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
