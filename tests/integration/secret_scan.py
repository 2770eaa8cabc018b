"""Search everything a run left behind for a secret: files (caches, job cache, logs, pki, state caches),
every event the run put on the bus, and extra texts (localcloud's records)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterable


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
    """``{files, log_lines, events, hits: [where: line]}`` (the secret itself is masked in ``hits``)."""
    needle = secret.encode()
    files = lines = 0
    hits: list[str] = []
    seen: set[Path] = set()
    for root in roots:
        for path in Path(root).rglob("*"):
            if not path.is_file() or path.is_symlink() or path in seen:
                continue
            seen.add(path)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            files += 1
            if path.suffix == ".log" or "log" in path.parts or "logs" in path.parts:
                lines += data.count(b"\n")
            if needle in data:
                at = data.index(needle)
                line = data[data.rfind(b"\n", 0, at) + 1:data.find(b"\n", at)][:300]
                hits.append(f"{path}: {line.decode(errors='replace').replace(secret, '<SECRET>')}")
    count = 0
    for event in events:
        count += 1
        if secret in json.dumps(event.data, default=str) or secret in event.tag:
            hits.append(f"event {event.tag}")
    for name, text in (texts or {}).items():
        if secret in text:
            hits.append(name)
    return {"files": files, "log_lines": lines, "events": count, "hits": hits}
