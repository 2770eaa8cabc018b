"""Install files atomically: write beside the live file, fsync, keep the previous version, os.replace."""

from __future__ import annotations

import os
import tempfile

PREVIOUS_SUFFIX = ".previous"


def read(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _write_beside(path: str, data: bytes, mode: int) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".phoenix-new", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def install(files: dict[str, str]) -> list[str]:
    """Replace each ``{path: text}`` atomically, keeping ``path + '.previous'``.

    All new files are written (beside their targets) before the first replace, so a full disk or
    a permission error changes nothing. If a replace fails, the files already replaced are put
    back. Returns the paths whose content changed.
    """
    staged: list[tuple[str, str, str | None]] = []  # (path, tmp, previous text)
    try:
        for path, text in files.items():
            old = read(path)
            if old == text:
                continue
            mode = os.stat(path).st_mode & 0o7777 if old is not None else 0o644
            staged.append((path, _write_beside(path, text.encode("utf-8"), mode), old))
    except BaseException:
        for _, tmp, _ in staged:
            os.unlink(tmp)
        raise
    done: list[tuple[str, str | None]] = []
    try:
        for path, tmp, old in staged:
            if old is not None:
                prev = _write_beside(path, old.encode("utf-8"), os.stat(path).st_mode & 0o7777)
                os.replace(prev, path + PREVIOUS_SUFFIX)
            os.replace(tmp, path)
            done.append((path, old))
    except BaseException:
        for path, old in reversed(done):
            if old is None:
                os.unlink(path)
            else:
                os.replace(_write_beside(path, old.encode("utf-8"), 0o644), path)
        for _, tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    for path, _ in done:
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return [path for path, _ in done]
