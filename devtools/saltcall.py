"""Run Salt the way an operator does: ``salt-call --local`` with a minion config of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


def write_minion_config(root: Path, repo: Path, file_roots: list[str] | None = None, loader_dirs: bool = True,
                        extra: dict | None = None) -> Path:
    """A minion config dir under ``root``; ``loader_dirs`` points Salt at the repo's loader modules."""
    conf_dir = root / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    config: dict = {
        "file_client": "local",
        "root_dir": str(root / "salt-root"),
        "file_roots": {"base": file_roots or [str(repo / "salt")]},
        "pillar_roots": {"base": [str(root / "pillar")]},
        "log_level_logfile": "info",
    }
    if loader_dirs:
        config.update(module_dirs=[str(repo / "_modules")], states_dirs=[str(repo / "_states")],
                      utils_dirs=[str(repo / "_utils")])
    config.update(extra or {})
    (conf_dir / "minion").write_text(yaml.safe_dump(config))
    (root / "pillar").mkdir(exist_ok=True)
    return conf_dir


def salt_call(conf_dir: Path, *args: str, env: dict | None = None, python: str | None = None,
              timeout: float = 180, log_level: str = "warning", check: bool = False) -> tuple[int, object, str]:
    """(exit code, parsed JSON 'local' return, stderr) of ``salt-call --local --retcode-passthrough``.

    ``check`` raises AssertionError with salt-call's output when it exits non-zero. When stdout is not
    JSON, it is returned as the data and appended to stderr.
    """
    if python:
        argv = [python, "-c", "import salt.scripts; salt.scripts.salt_call()"]
    else:
        argv = [str(BIN / "salt-call")]
    argv += ["--local", "--config-dir", str(conf_dir), "--out", "json", "--retcode-passthrough",
             "--log-level", log_level, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})) if env is not None else None)
    try:
        data = json.loads(proc.stdout)["local"] if proc.stdout.strip() else None
    except (json.JSONDecodeError, KeyError, TypeError):
        data = proc.stdout
    if check and proc.returncode != 0:
        raise AssertionError(f"salt-call {args} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    return proc.returncode, data, proc.stderr + (proc.stdout if isinstance(data, str) else "")
