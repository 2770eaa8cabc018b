"""Run ``extract_routes.py`` with the app's own interpreter and read its route table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from .errors import ExtractError
from .extract_routes import expand

SCRIPT = Path(__file__).with_name("extract_routes.py")


def extract(
    app: str,
    python: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    factory: bool = False,
) -> dict[str, Any]:
    """Import ``app`` (``module:attr`` or ``module:factory()``) and return its route table.

    ``python`` is the app's interpreter (its virtualenv's ``bin/python``); ``cwd`` the directory the
    app is imported from; ``env`` extra environment variables for the import. No shell is used.
    The returned dict is the extractor's JSON plus ``run_seconds`` (the whole subprocess).
    """
    interpreter = python or sys.executable
    workdir = cwd or os.getcwd()
    if not os.path.isdir(workdir):
        raise ExtractError(f"app directory {workdir!r} does not exist")
    if os.sep in interpreter and not os.access(interpreter, os.X_OK):
        raise ExtractError(f"app interpreter {interpreter!r} does not exist or is not executable")
    child_env = dict(os.environ)
    child_env.pop("PYTHONPATH", None)  # the app's own environment decides what it imports
    child_env.update(env or {})
    argv = [interpreter, str(SCRIPT), app] + (["--factory"] if factory else [])
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=workdir, env=child_env, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ExtractError(f"app {app!r} did not finish importing within {timeout:g}s (interpreter {interpreter})")
    except OSError as exc:
        raise ExtractError(f"cannot run the app interpreter {interpreter!r}: {exc.strerror}") from None
    elapsed = time.perf_counter() - started
    try:
        doc = json.loads(proc.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise ExtractError(
            f"route extractor for app {app!r} (interpreter {interpreter}) exited {proc.returncode} "
            f"without a route table: {' | '.join(tail) or 'no output'}"
        ) from None
    if "error" in doc:
        raise ExtractError(_error_message(doc["error"], interpreter, given=python is not None))
    expand(doc)
    doc["run_seconds"] = elapsed
    return doc


def _error_message(err: Mapping[str, Any], interpreter: str, given: bool) -> str:
    """The extractor's error, once, with what to do when the app's packages are not importable."""
    message = err["message"]
    detail = err.get("detail", "").strip().splitlines()
    if err.get("kind") == "import" and detail and detail[-1].strip() not in message:
        message += f" ({detail[-1].strip()})"  # the traceback's last line, when it says more
    if err.get("kind") == "import" and err.get("exception") in ("ModuleNotFoundError", "ImportError"):
        if given:
            message += (f". The interpreter {interpreter} cannot import it: is it the app's own (its "
                        "virtualenv's bin/python), with the app's requirements installed?")
        else:
            message += (f". It was imported with Phoenix's own interpreter ({interpreter}) because no "
                        "interpreter was given: the app's own is needed, e.g. python=/srv/myapp/venv/bin/python "
                        "(phoenix-allowlist --python /srv/myapp/venv/bin/python)")
    return message
