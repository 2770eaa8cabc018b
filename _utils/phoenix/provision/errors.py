"""Errors of the provisioning steps. Each message is written to be the ABANDON reason as it stands."""

from __future__ import annotations


class ProvisionError(Exception):
    """A provisioning step failed; the instance will never be healthy as built.

    ``step`` is the step's short name (``deployed-commit``, ``profile-swap``, ``os-updates``,
    ``inventory``, ``secrets``); ``str(exc)`` is ``"<step>: <reason>"`` and never contains a secret.
    """

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"{step}: {reason}")


class ProvisionInputError(ProvisionError, ValueError):
    """The caller's input or a setting is wrong (Salt shows it as SaltInvocationError)."""
