"""The init process of one localcloud instance: everything the instance runs descends from it.

    python -m localcloud.instance_init BOOT_DIR -- COMMAND [ARG ...]

It makes itself a *child subreaper* (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``), so a daemon that detaches
(``setsid``, double fork: NGINX, the app) is re-parented to it instead of to the machine's PID 1 and stays
in the instance's process tree. It starts ``COMMAND`` (the instance's salt-minion), then runs every
executable in ``BOOT_DIR`` with ``start``, in name order (the services the highstate enabled), reaps
orphans while it runs, and on SIGTERM/SIGINT ends the whole tree: SIGTERM to every descendant, SIGKILL to
what is left after the grace period, then it exits. Process titles and environments do not matter: the
tree is found through ``/proc/<pid>/stat`` parent links.

For tests and demos only (localcloud); Linux only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = float(os.environ.get("LOCALCLOUD_STOP_GRACE", "10"))


def _stat(pid: int | str) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first, then the parent pid); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return []


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != b"Z"


def parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process."""
    table: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields and fields[0] != b"Z":
                table[int(entry.name)] = int(fields[1])
    return table


def descendants(root: int, table: dict[int, int] | None = None) -> list[int]:
    """Live descendants of ``root`` (children first found, breadth first)."""
    table = parents() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def reap() -> None:
    """Collect every exited child (orphans included) without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_tree(grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every descendant, SIGKILL what survives ``grace`` seconds, reap them all."""
    me = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = descendants(me)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            reap()
            if not descendants(me):
                return
            time.sleep(0.05)
    reap()


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 1:
        print("usage: python -m localcloud.instance_init BOOT_DIR -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    boot_dir, command = argv[0], argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    subprocess.Popen(command, stdin=subprocess.DEVNULL)
    if os.path.isdir(boot_dir):
        for name in sorted(os.listdir(boot_dir)):
            script = os.path.join(boot_dir, name)
            if stopping or not (os.path.isfile(script) and os.access(script, os.X_OK)):
                continue
            code = subprocess.call([script, "start"], stdin=subprocess.DEVNULL)
            print(f"boot: {name} start -> {code}", flush=True)
    print("boot: done", flush=True)
    while not stopping:
        reap()
        time.sleep(0.2)
    end_tree()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
