"""Apply every OS update in the foreground (Phoenix).

.. code-block:: yaml

    all-os-updates:
      os_updates.applied: []

Runs ``phoenix:os_updates:commands`` (Debian's full and security upgrades by default). The changes say
which commands ran and whether a reboot is now required; the provisioning orchestration reboots then
(``provision.reboot_if_required``). With ``test=True`` nothing runs and the comment lists the commands.
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "os_updates"


def __virtual__():
    if "os_updates.upgrade" in __salt__:
        return __virtualname__
    return (False, "os_updates state: the os_updates execution module is not available")


def applied(name: str, **kwargs: Any) -> dict[str, Any]:
    """
    Run every configured update command now (always: a fresh instance is updated at build time).

    name
        A label.

    Keyword arguments override ``phoenix:os_updates`` (``commands``, ``timeout``, ``reboot_flag``).
    """
    ret: dict[str, Any] = {"name": name, "result": False, "changes": {}, "comment": ""}
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    try:
        if __opts__.get("test", False):
            planned = __salt__["os_updates.planned"](**kwargs)
            ret["result"] = None
            ret["changes"] = {"would_run": planned}
            ret["comment"] = f"Would run {len(planned)} update command(s): {'; '.join(planned)}."
            return ret
        out = __salt__["os_updates.upgrade"](**kwargs)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
        return ret
    ret["result"] = True
    ret["changes"] = {"commands": [c["command"] for c in out["commands"]], "reboot_required": out["reboot_required"]}
    if out["packages"]:
        ret["changes"]["reboot_packages"] = out["packages"]
    ret["comment"] = (f"Ran {len(out['commands'])} update command(s); a reboot is "
                      f"{'required' if out['reboot_required'] else 'not required'}.")
    return ret
