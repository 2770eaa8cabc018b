"""Salt loader entry point: tells Salt where Phoenix's loader modules live.

Two layouts are supported:

* installed wheel (``pip install .``): setup.cfg copies ``_modules``, ``_states``, ...
  into ``phoenix/saltext/<kind>`` inside the package;
* source checkout (``PYTHONPATH=_utils``): the repository's own ``_modules``, ``_states``, ...
"""

from __future__ import annotations

from pathlib import Path

#: Salt loader kind -> folder name in the repository (Salt's file_roots convention).
KINDS = {
    "modules": "_modules",
    "states": "_states",
    "runners": "_runners",
    "engines": "_engines",
    "pillar": "_pillar",
}


def get_dirs() -> dict[str, list[str]]:
    """Return ``{loader kind: [directory, ...]}`` for Salt's ``salt.loader`` entry point."""
    here = Path(__file__).resolve().parent
    dirs: dict[str, list[str]] = {}
    for kind, repo_name in KINDS.items():
        for candidate in (here / "saltext" / kind, here.parent.parent / repo_name):
            if candidate.is_dir():
                dirs[kind] = [str(candidate)]
                break
    return dirs
