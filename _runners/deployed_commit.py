"""Record which commit the next provisioning deploys (Phoenix), from the master.

Settings: ``phoenix:deploy:bucket`` / ``phoenix:deploy:key`` (master config) and ``phoenix:aws``.
"""

from __future__ import annotations

from typing import Any

try:
    import phoenix.aws
    import phoenix.provision.commit as _commit
    import phoenix.saltglue
    from phoenix.provision.errors import ProvisionError, ProvisionInputError

    HAS_PHOENIX = True
except ImportError:  # pragma: no cover
    HAS_PHOENIX = False

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "deployed_commit"


def __virtual__():
    return __virtualname__ if HAS_PHOENIX else (False, "deployed_commit runner: phoenix is not importable")


def _conf(bucket: str | None, key: str | None) -> tuple[Any, str | None, str | None]:
    conf = phoenix.saltglue.settings(__opts__, None, "phoenix:deploy", {"bucket": bucket, "key": key})
    return phoenix.saltglue.aws(__opts__, None), conf.get("bucket"), conf.get("key")


def publish(commit: str, bucket: str | None = None, key: str | None = None) -> dict[str, str]:
    """
    Record ``commit`` (a full SHA) in S3: every instance provisioned from now on deploys it.

    CLI Example:

    .. code-block:: bash

        salt-run deployed_commit.publish 0123456789abcdef0123456789abcdef01234567
        salt-run deployed_commit.publish $(git rev-parse HEAD) bucket=web-releases key=web/deployed-commit
    """
    aws, bucket, key = _conf(bucket, key)
    try:
        return _commit.publish(aws, bucket, key, commit)
    except ProvisionInputError as exc:
        raise SaltInvocationError(str(exc)) from None
    except (ProvisionError, phoenix.aws.PhoenixAWSError) as exc:
        raise CommandExecutionError(str(exc)) from None


def wanted(bucket: str | None = None, key: str | None = None) -> str:
    """
    The commit SHA recorded in S3 (what the next provisioning deploys).

    CLI Example:

    .. code-block:: bash

        salt-run deployed_commit.wanted
    """
    aws, bucket, key = _conf(bucket, key)
    try:
        return _commit.wanted(aws, bucket, key)
    except ProvisionInputError as exc:
        raise SaltInvocationError(str(exc)) from None
    except ProvisionError as exc:
        raise CommandExecutionError(str(exc)) from None
