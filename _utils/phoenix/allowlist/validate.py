"""Validate candidate files with the real ``nginx -t`` without touching the live configuration.

Every file NGINX would read (crossplane's parse) is copied into a private mirror directory; every
``include`` in the copies is pointed into the mirror; the candidates are placed in the mirror at the
live files' paths. ``nginx -t`` then reads exactly the live configuration with only the candidates
changed, and the live files are never written before it passes.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import Any, Mapping

from .errors import ReloadError, ValidationError
from .nginxconf import parse


def _mirror_path(root: str, path: str) -> str:
    return os.path.join(root, os.path.abspath(path).lstrip(os.sep))


def _rewrite_includes(text: str, includes: list[dict[str, Any]], root: str, prefix: str, file: str) -> str:
    lines = text.split("\n")
    for d in includes:
        arg = d["args"][0]
        absolute = arg if os.path.isabs(arg) else os.path.normpath(os.path.join(prefix, arg))
        new = _mirror_path(root, absolute)
        idx = d["line"] - 1
        pattern = re.compile(r"(\binclude\s+)([\"']?)" + re.escape(arg) + r"\2(\s*;)")
        replaced, n = pattern.subn(lambda m: f'{m.group(1)}"{new}"{m.group(3)}', lines[idx], count=1)
        if n != 1:
            raise ValidationError(f"{file}:{d['line']}: cannot point 'include {arg}' at the validation copy")
        lines[idx] = replaced
    return "\n".join(lines)


def nginx_test(
    config: str,
    candidates: Mapping[str, str],
    nginx: str = "nginx",
    prefix: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Run ``nginx -t`` on the live ``config`` with ``candidates`` ({live path: text}) in place.

    Returns nginx's output on success; raises :class:`ValidationError` with nginx's message, the
    paths mapped back to the live ones, when the test fails.
    """
    payload = parse(config, skip=tuple(candidates))  # their live text is not used: the candidates replace it
    conf_prefix = os.path.dirname(os.path.abspath(config))
    with tempfile.TemporaryDirectory(prefix="phoenix-nginx-t-") as root:
        for entry in payload["config"]:
            file = entry["file"]
            if os.path.abspath(file) in {os.path.abspath(p) for p in candidates}:
                continue
            includes = [d for d in _iter(entry["parsed"]) if d["directive"] == "include" and d["args"]]
            with open(file, encoding="utf-8", errors="surrogateescape") as fh:
                text = fh.read()
            dest = _mirror_path(root, file)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(_rewrite_includes(text, includes, root, conf_prefix, file))
        for path, text in candidates.items():
            dest = _mirror_path(root, path)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w", encoding="utf-8") as fh:
                fh.write(text)
        # relative paths of other directives (certificates, ...) resolve against the config's folder
        mirror_prefix = _mirror_path(root, conf_prefix)
        for name in os.listdir(conf_prefix):
            target = os.path.join(mirror_prefix, name)
            if not os.path.lexists(target):
                os.symlink(os.path.join(conf_prefix, name), target)
        argv = [nginx, "-t", "-c", _mirror_path(root, config)]
        if prefix:
            argv[1:1] = ["-p", prefix]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise ValidationError(f"the nginx binary {nginx!r} was not found") from None
        except subprocess.TimeoutExpired:
            raise ValidationError(f"'{nginx} -t' did not finish within {timeout:g}s") from None
        output = (proc.stdout + proc.stderr).replace(root, "").strip()
    if proc.returncode != 0:
        raise ValidationError(f"nginx -t rejected the configuration with the new allowlist: {output}")
    return output


def nginx_reload(config: str, nginx: str = "nginx", prefix: str | None = None, timeout: float = 60.0) -> str:
    """``nginx -t`` on the live ``config``, then, only if it passed, ``nginx -s reload``.

    Returns what NGINX said; raises :class:`ValidationError` (nothing reloaded) when the test fails and
    :class:`ReloadError` when the reload signal could not be delivered (no running master, bad pid file).
    """
    base = [nginx] + (["-p", prefix] if prefix else []) + ["-c", config]
    tested = _run(base + ["-t"], nginx, timeout)
    if tested.returncode != 0:
        raise ValidationError(f"nginx -t failed on {config}, NGINX was not reloaded: "
                              f"{(tested.stdout + tested.stderr).strip()}")
    reloaded = _run(base + ["-s", "reload"], nginx, timeout)
    if reloaded.returncode != 0:
        raise ReloadError(f"'{' '.join(base)} -s reload' failed (exit {reloaded.returncode}): "
                          f"{(reloaded.stdout + reloaded.stderr).strip() or 'no output'}. Is NGINX running "
                          "with this configuration?")
    return (reloaded.stdout + reloaded.stderr).strip()


def _run(argv: list[str], nginx: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ValidationError(f"the nginx binary {nginx!r} was not found") from None
    except subprocess.TimeoutExpired:
        raise ValidationError(f"'{' '.join(argv)}' did not finish within {timeout:g}s") from None


def _iter(directives: list[dict[str, Any]]):
    for d in directives:
        yield d
        if "block" in d:
            yield from _iter(d["block"])


__all__ = ["nginx_test", "nginx_reload"]
