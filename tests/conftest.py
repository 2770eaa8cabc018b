"""Shared test set-up: make the source checkout importable and keep daemons under pytest's basetemp."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO / "_utils", REPO):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
# subprocesses (salt-call, the app extractor, localcloud) see the same code
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "_utils"), str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


def pytest_configure(config: pytest.Config) -> None:
    try:  # avoid "I/O operation on closed file" noise from Salt's temp log handler at exit
        import salt._logging.impl

        salt._logging.impl.shutdown_temp_handler()
    except Exception:  # pragma: no cover - salt missing is reported by the tests that need it
        pass


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def event_listener():
    """pytest-salt-factories' event listener, bound to 127.0.0.1 (its default is 0.0.0.0).

    Events are kept 30 minutes, not the plugin's 120 s: a rebuild cycle on a loaded 2-core machine runs
    longer than that, and its first events were gone before the test looked for them."""
    from saltfactories.plugins.event_listener import EventListener

    listener = EventListener(timeout=1800)
    listener.host = "127.0.0.1"
    listener.address = f"tcp://127.0.0.1:{listener.port}"
    with listener:
        yield listener


@pytest.fixture(scope="session")
def salt_factories_default_root_dir(tmp_path_factory):
    """Keep every daemon's directories under pytest's basetemp, reached through a short symlink.

    Salt's Unix sockets live under each daemon's root dir, and a socket path has at most 107 bytes. Under
    pytest-xdist the basetemp gains a `popen-gwN/` level, and the minion's event socket
    (`.../rebuild-minion/run/minion/minion_event_<hash>_pub.ipc`) reached 114: `event.send` from salt-call
    could not connect, and the minion's events never reached the master."""
    import shutil
    import tempfile

    real = tmp_path_factory.mktemp("salt-factories")
    short = Path(tempfile.mkdtemp(prefix="phx-sf-"))
    (short / "r").symlink_to(real, target_is_directory=True)
    yield short / "r"
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="session")
def salt_factories_config():
    return {"slow_stop": False}
