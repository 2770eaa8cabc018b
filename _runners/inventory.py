"""Refresh a group's salt-ssh roster and SSH known_hosts from AWS and Salt, never from SSH (Phoenix).

Settings ``phoenix:inventory`` in the master config::

    phoenix:
      inventory:
        dir: /etc/salt/phoenix/inventory   # <group>.roster and <group>.known_hosts are written here
        user: admin                        # roster login user
        port: 22
        timeout: 10                        # seconds to wait for the minions' host key reports
        roster_extra: {sudo: true}         # merged into every roster entry

Use the roster with ``salt-ssh --roster-file /etc/salt/phoenix/inventory/web.roster '*' test.ping``.
"""

from __future__ import annotations

import logging
from typing import Any

try:
    import phoenix.aws
    import phoenix.provision.inventory as _inv
    import phoenix.saltglue
    from phoenix.provision.errors import ProvisionError, ProvisionInputError

    HAS_PHOENIX = True
except ImportError:  # pragma: no cover
    HAS_PHOENIX = False

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "inventory"


def __virtual__():
    return __virtualname__ if HAS_PHOENIX else (False, "inventory runner: phoenix is not importable")


def _reported(ids: list[str], timeout: float) -> dict[str, Any]:
    """Each minion's own answer to ``inventory.host_keys`` (returns are tied to the minion's key)."""
    import salt.client

    if not ids:
        return {}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        ret = client.cmd(ids, "inventory.host_keys", tgt_type="list", timeout=timeout)
    return {mid: keys for mid, keys in (ret or {}).items() if mid in ids and isinstance(keys, list)}


def refresh(group: str, **kwargs: Any) -> dict[str, Any]:
    """
    Rewrite ``<dir>/<group>.roster`` and ``<dir>/<group>.known_hosts`` from the group's live instances
    (AWS) and the host keys their minions report over Salt. Terminated instances drop out.

    Returns ``{group, roster, known_hosts, hosts, added, removed, without_keys, changed}``.

    CLI Example:

    .. code-block:: bash

        salt-run inventory.refresh web-WebGroup-1AB2
        salt-run inventory.refresh web-WebGroup-1AB2 dir=/srv/salt/inventory user=admin
    """
    conf = phoenix.saltglue.settings(__opts__, None, "phoenix:inventory",
                                     {k: v for k, v in kwargs.items() if not k.startswith("__")})
    aws = phoenix.saltglue.aws(__opts__, None)
    try:
        live = _inv.members(aws, str(group))
        reported = _reported(sorted(live), float(conf.get("timeout", 10)))
        out = _inv.refresh(str(group), live, reported, conf.get("dir"), user=str(conf.get("user", "root")),
                           port=int(conf.get("port", 22)), extra=conf.get("roster_extra"))
    except ProvisionInputError as exc:
        raise SaltInvocationError(str(exc)) from None
    except (ProvisionError, phoenix.aws.PhoenixAWSError) as exc:
        raise CommandExecutionError(f"inventory: {exc}") from None
    phoenix.saltglue.fire(phoenix.saltglue.emitter(__opts__), f"phoenix/inventory/{group}/refreshed",
                          {k: out[k] for k in ("hosts", "added", "removed", "without_keys", "changed")}, log)
    return out
