"""Search everything a run left behind for a secret: files (caches, job cache, logs, pki, state caches),
every event the run put on the bus, and extra texts (localcloud's records). Used by the tests and the demo::

    scan(secret, [master_root, instances_root], events=[(tag, data), ...], texts={"records": json_text})
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable


def scan(secret: str, roots: Iterable[Path], events: Iterable[tuple[str, Any]] = (),
         texts: dict[str, str] | None = None) -> dict[str, Any]:
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
    for tag, data in events:
        count += 1
        if secret in json.dumps(data, default=str) or secret in tag:
            hits.append(f"event {tag}")
    for name, text in (texts or {}).items():
        if secret in text:
            hits.append(name)
    return {"files": files, "log_lines": lines, "events": count, "hits": hits}
