"""Execution module ``nginx_whitelist``: serve only a Flask app's known URLs through NGINX.

Thin wrapper over :mod:`phoenix.allowlist` (shipped in ``_utils`` or installed with pip).

:depends: nginx-crossplane, the nginx binary, the app's own Python interpreter
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

__virtualname__ = "nginx_whitelist"

try:
    from phoenix.allowlist import manage as _manage
    from phoenix.allowlist import probe as _probe
    from phoenix.allowlist.errors import AllowlistError
    from phoenix.allowlist.extract import extract as _extract
    from phoenix.allowlist.render import render as _render
    from phoenix.allowlist.rules import compile_routes as _compile

    _IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - reported by __virtual__
    _IMPORT_ERROR = str(exc)


def __virtual__():
    if _IMPORT_ERROR:
        return False, f"nginx_whitelist: the phoenix package is not importable ({_IMPORT_ERROR})"
    return __virtualname__


def _fail(exc: Exception):
    from salt.exceptions import CommandExecutionError

    raise CommandExecutionError(str(exc)) from exc


def routes(app: str, python: str | None = None, cwd: str | None = None, factory: bool = False,
           timeout: float = 60, env: dict[str, str] | None = None) -> dict[str, Any]:
    """
    Import the Flask app with its own interpreter and return its route table.

    app
        ``module:attr`` or ``module:factory()`` (a factory called without or with literal arguments)
    python
        the app's interpreter, e.g. ``/srv/app/venv/bin/python`` (default: Salt's own)
    cwd
        the directory the app is imported from

    CLI Example:

    .. code-block:: bash

        salt '*' nginx_whitelist.routes 'myapp:create_app()' python=/srv/app/venv/bin/python cwd=/srv/app
    """
    try:
        return _extract(app, python=python, cwd=cwd, env=env, timeout=timeout, factory=factory)
    except AllowlistError as exc:
        _fail(exc)


def render(name: str, app: str, python: str | None = None, cwd: str | None = None, factory: bool = False,
           timeout: float = 60, status: int = 404, console_path: str = "/console",
           strict_paths: bool = True) -> dict[str, str]:
    """
    Render the allowlist for the app without touching any file: ``{"maps": ..., "gate": ...}``.

    name
        the path the maps file will have (it names the NGINX variables)

    CLI Example:

    .. code-block:: bash

        salt '*' nginx_whitelist.render /etc/nginx/conf.d/myapp.allowlist.conf 'myapp:app' \\
            python=/srv/app/venv/bin/python cwd=/srv/app
    """
    try:
        table = _extract(app, python=python, cwd=cwd, timeout=timeout, factory=factory)
        rendered = _render(_compile(table, [console_path] + ([table["console_path"]] if table.get("console_path") else [])),
                           name, status=status, strict_paths=strict_paths)
    except AllowlistError as exc:
        _fail(exc)
    return {"maps": rendered.maps, "gate": rendered.gate, "variable": rendered.variable}


def manage(name: str, app: str, config: str = "/etc/nginx/nginx.conf",
           gate: str | None = None, python: str | None = None, cwd: str | None = None,
           env: dict[str, str] | None = None, timeout: float = 60, factory: bool = False,
           upstream: str | None = None, status: int = 404, console_path: str = "/console",
           nginx: str = "nginx", prefix: str | None = None, test: bool = False,
           fast_path: bool = True, strict_paths: bool = True, intercept_errors: bool = False) -> dict[str, Any]:
    """
    Write (or with ``test=True`` only diff) the allowlist maps file ``name`` and its gate.

    The candidate is validated with ``nginx -t`` against the live configuration before anything is
    replaced; files are swapped atomically and the previous versions kept as ``*.previous``. Fails
    when the configuration does not include the files where they protect the app. Returns a
    state-style dict ``{name, result, changes, comment}``. ``fast_path=False`` keeps the fast path
    (nested locations for dynamic routes, see the README) out of the gate. ``strict_paths=False``
    also lets through raw paths that NGINX normalises (``%2F``, dot segments, ``//``) when the
    normalised path is allowed. ``intercept_errors=True`` makes NGINX answer the app's 500s with its
    own error page (so a debugger traceback, which carries its SECRET, never leaves NGINX).

    CLI Example:

    .. code-block:: bash

        salt '*' nginx_whitelist.manage /etc/nginx/conf.d/myapp.allowlist.conf 'myapp:app' \\
            python=/srv/app/venv/bin/python cwd=/srv/app upstream=127.0.0.1:8000 test=True
    """
    return _manage.managed(name, test=test, nginx=nginx, prefix=prefix, app=app, config=config, gate=gate,
                           python=python, cwd=cwd, env=env, timeout=timeout, factory=factory,
                           upstream=upstream, status=status, console_path=console_path, fast_path=fast_path,
                           strict_paths=strict_paths, intercept_errors=intercept_errors)


def probe(url: str, app: str, python: str | None = None, cwd: str | None = None, factory: bool = False,
          status: int = 404, console_path: str = "/console", timeout: float = 5) -> dict[str, Any]:
    """
    Check a running NGINX: samples of every route must reach the app, the debugger console, the
    ``__debugger__`` argument, unknown paths and wrong methods must get NGINX's refusal.

    CLI Example:

    .. code-block:: bash

        salt '*' nginx_whitelist.probe http://127.0.0.1:80 'myapp:app' python=/srv/app/venv/bin/python cwd=/srv/app
    """
    try:
        table = _extract(app, python=python, cwd=cwd, factory=factory)
        compiled = _compile(table, [console_path])
        return _probe.run(url, _probe.plan_checks(compiled), status=status, timeout=timeout)
    except (AllowlistError, OSError) as exc:
        _fail(exc)
