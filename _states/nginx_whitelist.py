"""State ``nginx_whitelist.managed``: NGINX serves exactly the Flask app's routes, 404 for the rest.

.. code-block:: yaml

    /etc/nginx/conf.d/myapp.allowlist.conf:
      nginx_whitelist.managed:
        - app: 'myapp:create_app()'
        - python: /srv/myapp/venv/bin/python
        - cwd: /srv/myapp
        - upstream: 127.0.0.1:8000
        - require:
          - file: /etc/nginx/sites-enabled/myapp
        - watch_in:
          - service: nginx

Include ``name`` in the ``http`` block and the gate (``gate``, by default ``name`` with the
extension ``.gate``) in each location that passes requests to the app. The state fails if they
are not included there: an allowlist that nothing includes protects nothing.
"""

from __future__ import annotations

from typing import Any

__virtualname__ = "nginx_whitelist"


def __virtual__():
    if "nginx_whitelist.manage" in __salt__:
        return __virtualname__
    return False, "nginx_whitelist: the nginx_whitelist execution module is not available"


def managed(name: str, app: str, config: str = "/etc/nginx/nginx.conf", gate: str | None = None,
            python: str | None = None, cwd: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60, factory: bool = False, upstream: str | None = None, status: int = 404,
            console_path: str = "/console", nginx: str = "nginx", prefix: str | None = None,
            fast_path: bool = True, strict_paths: bool = True, intercept_errors: bool = False) -> dict[str, Any]:
    """
    Keep the allowlist for ``app`` at ``name`` (http-level maps) and ``gate`` (location-level).

    name
        path of the maps file, included in the http block
    app
        ``module:attr`` or ``module:factory()``
    config
        the main NGINX configuration file to inspect and validate against
    gate
        path of the gate file (default: ``name`` with extension ``.gate``)
    python / cwd / env / timeout / factory
        how to import the app: its interpreter, directory, extra environment, time limit
    upstream
        the app's address as written in ``proxy_pass`` (``127.0.0.1:8000``, ``unix:/run/app.sock``
        or an ``upstream`` name); locations passing elsewhere are left alone. Default: every
        location with a ``*_pass`` directive must be gated.
    status
        the status NGINX answers for refused requests (404)
    console_path
        the Werkzeug debugger's console path, refused even when a rule would match it
    nginx / prefix
        the nginx binary and its ``-p`` prefix used for ``nginx -t``
    fast_path
        also write the fast path into the gate when the configuration allows it (True): nested
        prefix locations (one test of the request line for their dynamic rules) and exact locations
        (one per static rule) that serve the commonest requests without the maps. The comment says whether it is
        used, and why not.
    strict_paths
        refuse a request unless the raw path the app gets routes as the normalised path NGINX
        checked (True): no ``%2F``, no dot segment (``.``/``..``, in any encoding), no ``//``, no
        ``#``. False lets such paths through when the normalised path is allowed.
    intercept_errors
        make NGINX answer the app's 500s with its own error page (False). The debugger's traceback
        page, served on any 500, carries its SECRET; with this on it never leaves NGINX.
    """
    return __salt__["nginx_whitelist.manage"](
        name, app, config=config, gate=gate, python=python, cwd=cwd, env=env, timeout=timeout,
        factory=factory, upstream=upstream, status=status, console_path=console_path, nginx=nginx,
        prefix=prefix, test=bool(__opts__.get("test")), fast_path=fast_path, strict_paths=strict_paths,
        intercept_errors=intercept_errors,
    )
