"""The health check from the master through the instance's NGINX.

The app's health route must answer 200, and every blocked request (Werkzeug's ``/console`` and a
``__debugger__`` request) must answer 404: the allowlist is proven live before the instance serves. The
address comes from AWS (``PrivateIpAddress``), never from the minion.

While the health route is not reachable yet (NGINX starting) the check retries until its deadline; once
it answers, any wrong status is a final failure.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

from phoenix.lifecycle.options import HealthOptions

# never through a proxy from the environment: the check must reach the instance itself
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer, not something to follow
        return None


_OPENER.add_handler(_NoRedirect())


@dataclass
class HealthResult:
    ok: bool
    reason: str
    answers: dict[str, int | str] = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0


def status(url: str, timeout: float) -> int | str:
    """The HTTP status of ``GET url``, or the connection error's text."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"


def check(address: str, options: HealthOptions, deadline_seconds: float,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> HealthResult:
    """Check ``address`` (the instance's private IP) as described in the module docstring."""
    base = f"{options.scheme}://{address}:{options.port}"
    start = clock()
    attempts = 0
    answers: dict[str, int | str] = {}
    delay = 0.1
    while True:
        attempts += 1
        got = status(base + options.path, options.request_timeout)
        answers[options.path] = got
        if got == 200:
            break
        if clock() - start >= deadline_seconds:
            return HealthResult(False, f"health {base}{options.path} answered {got}, expected 200 (gave up after "
                                       f"{attempts} attempts)", answers, attempts, clock() - start)
        if isinstance(got, int) and got not in (502, 503, 504):
            # NGINX answers, the app says no (or the route is not allowed): waiting will not fix it
            return HealthResult(False, f"health {base}{options.path} answered {got}, expected 200", answers,
                                attempts, clock() - start)
        sleep(delay)
        delay = min(delay * 2, 2.0)
    for path in options.blocked:
        got = status(base + path, options.request_timeout)
        answers[path] = got
        if got != 404:
            return HealthResult(False, f"{base}{path} answered {got}, expected 404: the allowlist is not live",
                                answers, attempts, clock() - start)
    return HealthResult(True, f"{options.path} 200, " + ", ".join(f"{p} 404" for p in options.blocked), answers,
                        attempts, clock() - start)


__all__ = ["check", "status", "HealthResult"]
