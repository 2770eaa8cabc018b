"""Search everything a run left behind for a secret: files (caches, job cache, logs, pki, state caches),
every event the run put on the bus, and extra texts (localcloud's records)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterable

from devtools import secret_scan


class EventCollector:
    """Keeps every event the listener receives from the given daemons (the listener forgets after 120 s)."""

    def __init__(self, event_listener) -> None:
        self.listener, self.ids, self.events = event_listener, set(), {}
        self.since = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.poll()

    def poll(self) -> None:
        for event in self.listener.get_events([(i, "*") for i in list(self.ids)], after_time=self.since):
            self.events[(event.daemon_id, event.tag, event.stamp)] = event

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(5)
        self.poll()
        return list(self.events.values())


def scan(secret: str, roots: Iterable[Path], events: Iterable[Any] = (), texts: dict[str, str] | None = None) -> dict[str, Any]:
    """``{files, log_lines, events, hits: [where: line]}`` (the secret itself is masked in ``hits``);
    ``events`` as the event listener gives them (devtools.secret_scan does the search)."""
    return secret_scan.scan(secret, roots, [(e.tag, e.data) for e in events], texts)
