"""Every Phoenix loader module reads its settings through ``phoenix.saltglue`` only (issue 7, item 2).

``__pillar__`` and ``__opts__`` are Salt loader context objects; a module that reads them by hand (an
``isinstance(..., dict)`` test, ``__pillar__["phoenix"]``, ``__salt__["config.get"]("phoenix:...")``) can
silently miss a setting, as ``_modules/rebuild.py`` did with ``phoenix:aws``. The rule, checked on the syntax
tree of every module in the loader folders (present and future: ``_modules``, ``_states``, ``_runners``,
``_engines``, ``_pillar``, ``_sdb``, ...):

* ``__pillar__`` appears only as an argument of a ``phoenix.saltglue.<function>(...)`` call;
* ``__opts__`` likewise, or as ``__opts__.get("test", ...)`` (Salt's own test-mode flag, not a Phoenix setting);
* no string literal starting with ``phoenix:`` is passed to anything but ``phoenix.saltglue`` functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def loader_modules() -> list[Path]:
    return sorted(p for folder in REPO.glob("_*") if folder.is_dir() and folder.name != "_utils"
                  for p in folder.glob("*.py"))


def _is_saltglue_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and ast.unparse(node.func.value) == "phoenix.saltglue")


def violations(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ("__pillar__", "__opts__"):
            parent = parents.get(node)
            if _is_saltglue_call(parent) and node in parent.args:
                continue
            if node.id == "__opts__" and isinstance(parent, ast.Attribute) and parent.attr == "get":
                call = parents.get(parent)
                if (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)
                        and call.args[0].value == "test"):
                    continue
            found.append(f"{filename}:{node.lineno}: {ast.unparse(parent) if parent else node.id}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("phoenix:"):
            call = parents.get(node)
            if isinstance(call, ast.Call) and not _is_saltglue_call(call):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(call)}")
    return found


def test_loader_modules_read_settings_only_through_saltglue() -> None:
    modules = loader_modules()
    assert {p.name for p in modules} >= {"rebuild.py", "nginx_whitelist.py"} and len(modules) >= 4
    bad = [v for path in modules for v in violations(path.read_text(), str(path.relative_to(REPO)))]
    assert not bad, "read settings with phoenix.saltglue (section/settings/value/aws):\n" + "\n".join(bad)


def test_the_check_catches_hand_reading() -> None:
    bad = '''
def f():
    if isinstance(__pillar__, dict):
        return __pillar__.get("phoenix", {})
    region = __salt__["config.get"]("phoenix:aws:region")
    return __opts__["phoenix"]
'''
    good = '''
def g():
    test = __opts__.get("test", False)
    return phoenix.saltglue.settings(__opts__, __pillar__, "phoenix:aws"), phoenix.saltglue.emitter(__opts__, __salt__)
'''
    assert len(violations(bad, "bad.py")) == 4
    assert violations(good, "good.py") == []
