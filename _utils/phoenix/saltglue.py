"""The one piece of Salt glue every Phoenix loader module uses (execution, state, runner, engine,
ext_pillar).

It does three jobs, so that loader modules stay a few lines per function:

* **Settings.** :func:`settings` reads one ``phoenix:<section>`` from Salt's config (``__opts__``) and
  pillar (``__pillar__``), pillar winning over config and the caller's keyword arguments winning over
  both. In Salt 3008 ``__opts__`` and ``__pillar__`` are loader context objects
  (``salt.loader.context.NamedLoaderContext``, a ``MutableMapping`` but not a ``dict``), so nothing here
  tests for ``dict``: anything with ``.get()`` (or ``Mapping``) is read, whatever its class.
* **Events.** :func:`emitter` picks where progress events go from where the code runs: the master's
  event bus (runners, orchestration, engines, ext_pillar), ``event.send`` on a minion connected to a
  master, or nowhere (``salt-call --local``: log lines only).
* **Errors.** :func:`salt_error` turns Phoenix's own exceptions into Salt's (``SaltInvocationError`` for
  bad input, ``CommandExecutionError`` for everything else), keeping the message that names the input
  and the fix.

Pure Python apart from lazy Salt imports, so unit tests can use it with plain dicts as well.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], bool]


def _mapping_like(node: Any) -> bool:
    return isinstance(node, Mapping) or (hasattr(node, "get") and hasattr(node, "keys"))


def section(source: Any, path: str) -> dict[str, Any]:
    """The plain-dict copy of ``source[part1][part2]...`` for ``path`` ``"phoenix:aws"``; ``{}`` if absent.

    ``source`` may be ``__opts__``, ``__pillar__`` (loader context objects), a dict or ``None``. A value
    that exists but is not a mapping raises ``ValueError`` naming the path (a pillar typo such as
    ``phoenix: aws: eu-west-1`` must not be silently ignored).
    """
    node: Any = source
    walked: list[str] = []
    for part in path.split(":"):
        if node is None:
            return {}
        if not _mapping_like(node):
            raise ValueError(f"{':'.join(walked)} must be a mapping (key: value lines), got "
                             f"{type(node).__name__}: fix it in pillar or the Salt config")
        node = node.get(part)
        walked.append(part)
    if node is None:
        return {}
    if not _mapping_like(node):
        raise ValueError(f"{path} must be a mapping (key: value lines), got {type(node).__name__} "
                         f"{node!r}: fix it in pillar or the Salt config")
    return {key: node[key] for key in node.keys()}


def settings(opts: Any, pillar: Any, path: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``phoenix:<section>`` merged: config < pillar < ``overrides`` (keys whose value is ``None`` are ignored).

    CLI Example (what a loader module does):

    .. code-block:: python

        aws = phoenix.saltglue.settings(__opts__, __pillar__, "phoenix:aws", {"region": region})
    """
    merged: dict[str, Any] = {}
    for source in (section(opts, path), section(pillar, path), dict(overrides or {})):
        merged.update({k: v for k, v in source.items() if v is not None})
    return merged


def layered(opts: Any, pillar: Any, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config section, pillar section)`` for code that merges layers itself (``settings_from``)."""
    return section(opts, path), section(pillar, path)


def value(opts: Any, pillar: Any, path: str, default: Any = None) -> Any:
    """One setting (``"phoenix:rebuild:stack"``): pillar, else config, else ``default``."""
    head, _, key = path.rpartition(":")
    merged = settings(opts, pillar, head)
    return merged.get(key, default)


# -- events -----------------------------------------------------------------------------------------
def runs_on_master(opts: Any) -> bool:
    """True inside the master process tree (runners, orchestration, engines, ext_pillar)."""
    return opts.get("__role") == "master"


def emitter(opts: Any, salt_funcs: Any = None) -> Emit | None:
    """How to put an event on a bus from where this code runs; ``None`` means log lines only.

    * master (runner, ``state.orchestrate``, engine, ext_pillar): fire on the master event bus;
    * a minion connected to a master: ``event.send`` (the master sees a ``_minion_event`` from it);
    * ``salt-call --local`` / masterless: no bus (``event.send`` would return False).
    """
    if runs_on_master(opts):
        import salt.utils.event

        def fire_master(tag: str, data: dict[str, Any]) -> bool:
            with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
                return bool(bus.fire_event(data, tag))

        return fire_master
    if opts.get("file_client") == "local" or opts.get("local") or opts.get("master_type") == "disable":
        return None
    if salt_funcs is None or "event.send" not in salt_funcs:
        return None

    def send(tag: str, data: dict[str, Any]) -> bool:
        return bool(salt_funcs["event.send"](tag, data))

    return send


def fire(emit: Emit | None, tag: str, data: dict[str, Any], logger: logging.Logger | None = None) -> bool:
    """Fire ``tag`` through ``emit`` (from :func:`emitter`) and log it; a failing bus never raises."""
    (logger or log).info("%s %s", tag, {k: v for k, v in data.items() if k != "_stamp"})
    if emit is None:
        return False
    try:
        return emit(tag, data)
    except Exception as exc:  # a bus problem must not break the operation it reports on
        (logger or log).warning("could not fire %s: %s", tag, exc)
        return False


# -- errors -----------------------------------------------------------------------------------------
def salt_error(exc: BaseException, invocation: tuple[type[BaseException], ...] = (ValueError,)) -> Exception:
    """The Salt exception to raise for ``exc`` (``raise salt_error(exc) from None``).

    ``invocation`` lists the exception types that mean "the caller's input is wrong"
    (``SaltInvocationError``); anything else becomes ``CommandExecutionError``.
    """
    from salt.exceptions import CommandExecutionError, SaltInvocationError

    if isinstance(exc, invocation):
        return SaltInvocationError(str(exc))
    return CommandExecutionError(str(exc))


def aws(opts: Any, pillar: Any, overrides: Mapping[str, Any] | None = None) -> Any:
    """The :class:`phoenix.aws.AWS` adapter configured from ``phoenix:aws`` (config < pillar < overrides).

    Raises ``SaltInvocationError`` for a bad setting (an unknown key, keys in pillar) and
    ``CommandExecutionError`` when no region is configured.
    """
    import phoenix.aws

    from salt.exceptions import CommandExecutionError

    try:
        conf, pil = layered(opts, pillar, "phoenix:aws")
        merged = phoenix.aws.settings_from(conf, pil, {k: v for k, v in (overrides or {}).items() if v is not None})
    except ValueError as exc:
        raise salt_error(exc) from None
    try:
        phoenix.aws.require_region(merged)
    except ValueError as exc:  # configuration, not the call's arguments: no usage text
        raise CommandExecutionError(str(exc)) from None
    return phoenix.aws.AWS(merged)


def mine_get(opts: Any, salt_funcs: Any, targets: list[str], function: str) -> dict[str, Any]:
    """The mine data ``function`` of the minions ``targets`` (a list of ids): through the mine runner
    inside the master (orchestration), through ``mine.get`` (asks the master) on a minion, ``{}`` under
    ``salt-call --local`` (no master to ask)."""
    if not targets:
        return {}
    if runs_on_master(opts):
        import salt.runner

        data = salt.runner.RunnerClient(opts).cmd("mine.get", [",".join(targets), function, "list"],
                                                  print_event=False)
    elif opts.get("file_client") == "local" or opts.get("local") or salt_funcs is None:
        return {}
    else:
        data = salt_funcs["mine.get"](",".join(targets), function, tgt_type="list")
    return dict(data) if isinstance(data, Mapping) else {}


__all__ = ["section", "settings", "layered", "value", "emitter", "fire", "runs_on_master", "salt_error", "aws", "mine_get"]
