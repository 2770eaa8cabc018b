"""Errors raised by the rebuild logic. Each message names the input that caused it and what to do."""

from __future__ import annotations

from typing import Any


class RebuildError(Exception):
    """Base class: a rebuild request could not be carried out."""


class TargetNotFound(RebuildError):
    """The stack or group named by the caller does not exist (or is not managed)."""


class BadRequest(RebuildError):
    """Invalid arguments or settings (unknown strategy, bad duration, missing parameter...)."""


class PreflightFailed(RebuildError):
    """Preflight found problems; nothing was changed. ``problems`` is a list of dicts."""

    def __init__(self, group: str, problems: list[dict[str, Any]], changed: str = "nothing was changed") -> None:
        self.group = group
        self.problems = problems
        lines = "; ".join(p["message"] for p in problems)
        super().__init__(f"rebuild of {group} refused, {changed}: {lines}")


class CycleInProgress(PreflightFailed):
    """A rebuild cycle (or another update) is already running on the group."""
