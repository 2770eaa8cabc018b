"""The whole pipeline behind ``nginx_whitelist.managed`` and ``phoenix-allowlist``.

``plan`` reads (app, live files, NGINX config) and computes the candidates and their diff; it writes
nothing. ``apply`` validates the plan with ``nginx -t`` and swaps the files in. ``managed`` is both,
returning a Salt-style result dict, so the state module and the stand-alone command share one path.
"""

from __future__ import annotations

import difflib
import functools
import gc
import logging
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from . import swap
from .errors import AllowlistError, ConfigError
from .extract import extract
from .fastpath import choose_each as choose_fast_paths
from .nginxconf import PASS_DIRECTIVES, Inspection, inspect, is_generated
from .render import Rendered, app_id, render, render_gate
from .rules import Compiled, compile_routes
from .validate import nginx_test

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/nginx/nginx.conf"
T = TypeVar("T")


def default_gate(maps_path: str) -> str:
    """``/etc/nginx/conf.d/app.conf`` -> ``/etc/nginx/conf.d/app.gate`` (outside ``*.conf`` globs)."""
    return os.path.splitext(maps_path)[0] + ".gate"


@dataclass
class Plan:
    """Everything needed to decide and to apply; nothing written yet."""

    maps_path: str
    gate_path: str
    table: dict[str, Any]
    compiled: Compiled
    rendered: Rendered
    inspection: Inspection
    current: dict[str, str | None]
    timings: dict[str, float] = field(default_factory=dict)
    #: test mode only: why the current configuration would not protect the app (yet)
    problems: list[str] = field(default_factory=list)
    #: why the fast path is off ("" when it is on or there is nothing for it to do)
    fast_off: str = ""
    #: switches away from the defaults, for the summary ("strict paths off", ...)
    modes: list[str] = field(default_factory=list)
    #: the gate's per-location copies the configuration includes: {path: (text, fast path summary, why off)}
    copies: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    @property
    def files(self) -> dict[str, str]:
        return {self.maps_path: self.rendered.maps, self.gate_path: self.rendered.gate,
                **{path: text for path, (text, _, _) in self.copies.items()}}

    @property
    def changed(self) -> list[str]:
        return [p for p, text in self.files.items() if self.current.get(p) != text]

    def diff(self) -> str:
        out = []
        for path, text in self.files.items():
            old = self.current.get(path)
            out.extend(difflib.unified_diff(
                (old or "").splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=path if old is not None else "/dev/null", tofile=path))
        return "".join(out)

    def summary(self) -> str:
        exact = sum(1 for p in self.compiled.patterns if p.regex is None)
        fast = self.rendered.fast or (f"no fast path: {self.fast_off}" if self.fast_off else "no fast path")
        if self.copies:  # the gate itself may be included nowhere then: what each file holds
            fast = "; ".join([f"{os.path.basename(self.gate_path)}: {fast}"] + [
                f"{os.path.basename(path)}: {summary or ('no fast path: ' + off if off else 'no fast path')}"
                for path, (_, summary, off) in self.copies.items()])
        return (f"{len(self.compiled.patterns)} routes of {self.table['app']} ({exact} static, "
                f"{len(self.compiled.patterns) - exact} dynamic) guard {len(self.inspection.locations)} "
                f"location(s) in {self.inspection.config} ({'; '.join([fast, *self.modes])})")


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _gc_paused(func: Callable[..., T]) -> Callable[..., T]:
    """Pause the cyclic garbage collector while a route table becomes the include.

    Each collection traverses every live object, and the table, its patterns and the rendered lines of a
    5,000-route app are a few hundred thousand: collections took three quarters of the time. Nothing
    made here needs the collector (no reference cycles); it runs again on the way out.
    """
    @functools.wraps(func)
    def paused(*args: Any, **kwargs: Any) -> T:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@_gc_paused
def plan(
    name: str,
    app: str,
    config: str = DEFAULT_CONFIG,
    gate: str | None = None,
    python: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    factory: bool = False,
    upstream: str | None = None,
    status: int = 404,
    console_path: str | list[str] | None = "/console",
    strict: bool = True,
    fast_path: bool = True,
    strict_paths: bool = True,
    intercept_errors: bool = False,
) -> Plan:
    """Extract, compile, render and inspect; raises :class:`AllowlistError` subclasses.

    With ``strict=False`` (test mode) a configuration that does not include the files yet is
    recorded in ``Plan.problems`` instead of raised: an earlier state of the same run may deploy it.
    ``fast_path=False`` leaves every decision to the maps (see ``fastpath.py`` for when it is used).
    ``strict_paths=False`` lets through requests whose raw path NGINX normalises (``%2F``, dot
    segments, ``//``) when the normalised path is allowed. ``intercept_errors=True`` makes NGINX
    answer the app's 500s with its own error page (the debugger's traceback carries its SECRET).
    """
    started = time.perf_counter()
    cpu = _cpu()
    gate_path = gate or default_gate(name)
    table = extract(app, python=python, cwd=cwd, env=env, timeout=timeout, factory=factory)
    extracted = time.perf_counter()
    consoles = [console_path] if isinstance(console_path, str) else list(console_path or [])
    if table.get("console_path"):
        consoles.append(table["console_path"])
    compiled = compile_routes(table, consoles)
    header = "\n".join(
        [f"app {table['app']} (werkzeug {table.get('werkzeug')}), {len(compiled.patterns)} routes"]
        + [f"note: {n}" for n in compiled.notes]
    )
    inspection = inspect(config, name, gate_path, upstream=upstream)
    wrong_upstream = inspection.upstream_not_found()
    if wrong_upstream:  # a typo, in test mode too: "would be updated" would hide it
        raise ConfigError(wrong_upstream)
    aid = app_id(name)
    clash = [f for f in inspection.http_includes if os.path.abspath(f) != os.path.abspath(name)
             and app_id(f) == aid and is_generated(f)]
    if clash:  # NGINX would let one app's maps silently decide for the other
        raise ConfigError(f"the allowlist {clash[0]}, also included in the http context of {config}, uses the same "
                          f"NGINX variables ($phoenix_{aid}_*) as {name}: give the maps files different names")
    problems = inspection.problems()
    limits = inspection.limit_problems()
    if limits:  # the gate is there but NGINX would not ask it for some methods
        unlimited = f"the allowlist for {table['app']} would not protect it in {config}: " + "; ".join(limits) + "."
        if strict:
            raise ConfigError(unlimited)
    if problems:
        meant = inspection.meant()
        fix = f"If you meant {meant}, name that file; otherwise include " if meant else "Include "
        message = (f"the allowlist for {table['app']} would not protect it in {config}: " + "; ".join(problems)
                   + f". {fix}{name} in the http block and {gate_path} in each location that reaches the app.")
        if strict:
            raise ConfigError(message)
        problems = [message] + ([unlimited] if limits else [])
        off = "the configuration does not protect the app yet (see the warning)"
    elif limits:
        problems = [unlimited]
        off = "the configuration does not protect the app yet (see the warning)"
    elif not fast_path:
        off = "turned off (fast_path=False)"
    else:
        off = ""
    chosen = choose_fast_paths(inspection) if not off else {}
    fast, fast_off = chosen.get(gate_path, (None, off))
    intercept: tuple[str, ...] = ()
    if intercept_errors:
        used = {d for loc in inspection.locations for d, _, _ in loc.own if d in PASS_DIRECTIVES}
        intercept = tuple(sorted(used)) or ("proxy_pass",)
    # a gate without the fast path (the gate's, or a per-location copy's) makes the request-line test (linemap), and
    # with pcre_jit on one whose rules fit one regex makes it instead of its nested locations (render_gate)
    line = fast is None or inspection.pcre_jit or \
        any(chosen.get(path, (None, off))[0] is None for path in inspection.location_gates)
    rendered = render(compiled, name, status=status, header=header, fast=fast, strict_paths=strict_paths,
                      intercept_errors=intercept, merge_slashes=not inspection.merge_slashes_off, line=line)
    copies: dict[str, tuple[str, str, str]] = {}
    for path in inspection.location_gates:
        copy_fast, copy_off = chosen.get(path, (None, off))
        where = [loc.where() for loc in inspection.locations if loc.gate_file == path]
        text, summary = render_gate(compiled, name, status, copy_fast, strict_paths, intercept,
                                    copy_for=", ".join(where) or "one location", line=rendered.line)
        copies[path] = (text, summary, copy_off)
    done = time.perf_counter()
    timings = {
        # CPU seconds of this process and the extractor beyond the app's import: the figure a busy machine
        # does not inflate (wall-clock time is the same on a quiet one)
        "rest_cpu": _cpu() - cpu - float(table.get("import_cpu_seconds", 0.0)),
        "app_import": float(table.get("import_seconds", 0.0)),
        "extract_process": extracted - started - float(table.get("import_seconds", 0.0)),
        "compile_render_inspect": done - extracted,
    }
    modes = [] if strict_paths else ["strict paths off"]
    if intercept:
        modes.append("NGINX answers the app's 500s")
    current = {path: swap.read(path) for path in (name, gate_path, *copies)}
    log.info("phoenix allowlist: %d routes of %s rendered in %.3fs (app import %.3fs)", len(compiled.patterns),
             table["app"], done - started, timings["app_import"])
    if fast_off:
        log.info("phoenix allowlist: no fast path for %s: %s", table["app"], fast_off)
    return Plan(name, gate_path, table, compiled, rendered, inspection, current, timings, problems, fast_off, modes,
                copies)


def apply(p: Plan, nginx: str = "nginx", prefix: str | None = None) -> list[str]:
    """Validate the candidates with ``nginx -t`` and install the changed files atomically."""
    if not p.changed:
        return []
    started = time.perf_counter()
    nginx_test(p.inspection.config, p.files, nginx=nginx, prefix=prefix)
    p.timings["nginx_t"] = time.perf_counter() - started
    return swap.install({path: p.files[path] for path in p.changed})


def managed(name: str, test: bool = False, nginx: str = "nginx", prefix: str | None = None,
            strict: bool | None = None, **kwargs: Any) -> dict[str, Any]:
    """Salt-style ``{name, result, changes, comment}`` for the allowlist at ``name``.

    ``strict`` (default: not ``test``): fail when the configuration does not include the files where they
    protect the app. Salt's test mode is lenient (an earlier state of the run may deploy the site config);
    the command line is strict in ``--test`` too, since nothing else will change the config before the run.
    """
    ret: dict[str, Any] = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        p = plan(name, strict=not test if strict is None else strict, **kwargs)
    except AllowlistError as exc:
        ret["comment"] = str(exc)
        return ret
    notes = "".join(f" Note: {n}." for n in p.compiled.notes)
    notes += "".join(f" Warning: {m}; unless an earlier state deploys that, applying will fail." for m in p.problems)
    if not p.changed and not p.problems:
        ret.update(result=True, comment=f"The allowlist is up to date: {p.summary()}.{notes}")
        return ret
    changes = {"diff": p.diff(), "files": p.changed}
    if test:
        ret.update(result=None, changes=changes,
                   comment=f"The allowlist would be updated ({', '.join(p.changed)}): {p.summary()}.{notes}")
        return ret
    try:
        written = apply(p, nginx=nginx, prefix=prefix)
    except (AllowlistError, OSError) as exc:
        ret["comment"] = f"{exc}. The live files were left as they were."
        return ret
    log.info("phoenix allowlist: wrote %s (%s)", ", ".join(written), p.summary())
    kept = [path + swap.PREVIOUS_SUFFIX for path in written if p.current.get(path) is not None]
    previous = f" Previous version(s) kept: {', '.join(kept)}." if kept else ""
    ret.update(result=True, changes=changes,
               comment=f"The allowlist was updated and passed nginx -t: {p.summary()}.{previous}{notes}")
    return ret
