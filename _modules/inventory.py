"""What an instance reports about itself for Phoenix's inventory: its SSH host public keys.

Setting ``phoenix:inventory:host_key_dir`` (default ``/etc/ssh``; relative paths are under the minion's
``root_dir``). Only ``ssh_host_*_key.pub`` files are read; private keys never.
"""

from __future__ import annotations

from typing import Any

try:
    import phoenix.provision.inventory as _inv
    import phoenix.saltglue

    HAS_PHOENIX = True
except ImportError:  # pragma: no cover
    HAS_PHOENIX = False

__virtualname__ = "inventory"


def __virtual__():
    return __virtualname__ if HAS_PHOENIX else (False, "inventory: phoenix is not importable")


def host_keys(host_key_dir: str | None = None) -> list[dict[str, str]]:
    """
    This machine's SSH host public keys, ``[{type, key}]`` (comments dropped).

    CLI Example:

    .. code-block:: bash

        salt-call inventory.host_keys
        salt 'i-*' inventory.host_keys
    """
    import os

    keydir = host_key_dir or phoenix.saltglue.value(__opts__, __pillar__, "phoenix:inventory:host_key_dir", "/etc/ssh")
    if not os.path.isabs(str(keydir)):
        keydir = os.path.join(__opts__.get("root_dir") or "/", str(keydir))
    return _inv.host_keys(keydir)
