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
        err = doc["error"]
        detail = err.get("detail", "").strip().splitlines()
        where = f" ({detail[-1]})" if detail and err.get("kind") == "import" else ""
        raise ExtractError(err["message"] + where)
    doc["run_seconds"] = elapsed
    return doc
