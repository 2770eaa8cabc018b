"""All OS updates at build time, in the foreground, and the reboot they may need (Phoenix).

Thin wrapper over :mod:`phoenix.provision.osupdate`; settings ``phoenix:os_updates`` (config < pillar <
keyword arguments): ``commands`` (list of argv lists; default Debian's ``apt-get update``,
``apt-get dist-upgrade`` and ``unattended-upgrade``), ``reboot_flag`` (default
``/var/run/reboot-required``; relative paths are under the minion's ``root_dir``), ``reboot_command``
(default ``[systemctl, reboot]``), ``timeout`` (seconds per command, default 3600), ``env`` (extra
environment for the commands).
"""

from __future__ import annotations

import logging
from typing import Any

try:
    import phoenix.provision.osupdate as _os
    import phoenix.saltglue
    from phoenix.provision.errors import ProvisionError, ProvisionInputError

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "os_updates"


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"os_updates: the phoenix package must be importable: {IMPORT_ERROR}")
    return __virtualname__


def _conf(**overrides: Any) -> dict[str, Any]:
    try:
        merged = phoenix.saltglue.settings(__opts__, __pillar__, "phoenix:os_updates",
                                           {k: v for k, v in overrides.items() if not k.startswith("__")})
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None
    return {**_os.DEFAULTS, **merged}


def _raise(exc: Exception) -> None:
    if isinstance(exc, ProvisionInputError):
        raise SaltInvocationError(str(exc)) from None
    raise CommandExecutionError(str(exc)) from None


def upgrade(**kwargs: Any) -> dict[str, Any]:
    """
    Apply every OS update now, in the foreground (``phoenix:os_updates:commands``), then report whether a
    reboot is required.

    Returns ``{commands: [{command, retcode, seconds, last_line}], reboot_required, packages}``; the first
    failing command raises an error naming it (the ABANDON reason).

    CLI Example:

    .. code-block:: bash

        salt-call os_updates.upgrade
        salt-call os_updates.upgrade timeout=600
    """
    conf = _conf(**kwargs)
    try:
        cmds = _os.expand(_os.commands(conf["commands"]), __opts__.get("root_dir"), __opts__.get("id"))
        done = _os.upgrade(cmds, float(conf["timeout"]), {str(k): str(v) for k, v in (conf.get("env") or {}).items()})
        state = _os.reboot_required(_os.resolve(conf["reboot_flag"], __opts__.get("root_dir")))
    except ProvisionError as exc:
        _raise(exc)
    log.info("os_updates: %d command(s) done, reboot %s", len(done), "required" if state["required"] else "not required")
    return {"commands": done, "reboot_required": state["required"], "packages": state["packages"]}


def planned(**kwargs: Any) -> list[str]:
    """
    The commands :func:`upgrade` would run (nothing is run).

    CLI Example:

    .. code-block:: bash

        salt-call os_updates.planned
    """
    try:
        cmds = _os.expand(_os.commands(_conf(**kwargs)["commands"]), __opts__.get("root_dir"), __opts__.get("id"))
        return [" ".join(c) for c in cmds]
    except ProvisionError as exc:
        _raise(exc)


def reboot_required(**kwargs: Any) -> dict[str, Any]:
    """
    Whether the system says a reboot is required (``{required, flag, packages}``).

    CLI Example:

    .. code-block:: bash

        salt-call os_updates.reboot_required
    """
    conf = _conf(**kwargs)
    return _os.reboot_required(_os.resolve(conf["reboot_flag"], __opts__.get("root_dir")))


def reboot(**kwargs: Any) -> dict[str, Any]:
    """
    Reboot now with ``phoenix:os_updates:reboot_command`` (started detached, so this job still returns).
    The orchestration (``provision.reboot_if_required``) waits for the minion to come back.

    CLI Example:

    .. code-block:: bash

        salt-call os_updates.reboot
    """
    conf = _conf(**kwargs)
    try:
        cmd = _os.expand(_os.commands([conf["reboot_command"]], "phoenix:os_updates:reboot_command"),
                         __opts__.get("root_dir"), __opts__.get("id"))[0]
        pid = _os.reboot(cmd)
    except ProvisionError as exc:
        _raise(exc)
    log.warning("os_updates: rebooting (%s, pid %s)", " ".join(cmd), pid)
    return {"rebooting": True, "command": " ".join(cmd), "pid": pid}
