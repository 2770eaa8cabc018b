"""Every Phoenix loader module reads its settings through ``phoenix.saltglue`` only (issue 7, item 2).

``__pillar__`` and ``__opts__`` are Salt loader context objects; a module that reads them by hand (an
``isinstance(..., dict)`` test, ``__pillar__["phoenix"]``, ``__salt__["config.get"]("phoenix:...")``) can
silently miss a setting, as ``_modules/rebuild.py`` did with ``phoenix:aws``. The rule, checked on the syntax
tree of every module in the loader folders (present and future: ``_modules``, ``_states``, ``_runners``,
``_engines``, ``_pillar``, ``_sdb``, ...):

* ``__pillar__`` appears only as an argument of a ``phoenix.saltglue.<function>(...)`` call;
* ``__opts__`` is never tested with ``isinstance`` and never indexed or ``.get()``-ed with a ``phoenix`` key
  (Salt's own options, ``__opts__["cachedir"]``, ``__opts__.get("test")``, and passing ``__opts__`` whole to a
  Salt API such as ``salt.key.get_key(__opts__)`` are fine: they are not Phoenix settings);
* no string literal starting with ``phoenix`` is looked up by hand: passed to a ``.get(...)`` call or to
  ``__salt__[...]`` (``config.get``/``pillar.get``), or used as a subscript. Error messages naming a setting
  (``"phoenix:deploy:target is not set"``) are fine.
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


def _phoenix_key(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("phoenix")


def violations(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ("__pillar__", "__opts__"):
            parent = parents.get(node)
            where = f"{filename}:{node.lineno}: {ast.unparse(parent) if parent else node.id}"
            if node.id == "__pillar__":
                if not (_is_saltglue_call(parent) and node in parent.args):
                    found.append(where)
                continue
            if (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                    and parent.func.id == "isinstance"):
                found.append(where)
            elif isinstance(parent, ast.Subscript) and _phoenix_key(parent.slice):
                found.append(where)
            elif isinstance(parent, ast.Attribute) and parent.attr in ("get", "setdefault", "__getitem__"):
                call = parents.get(parent)
                if isinstance(call, ast.Call) and call.args and _phoenix_key(call.args[0]):
                    found.append(where)
        if _phoenix_key(node):
            parent = parents.get(node)
            if isinstance(parent, ast.Subscript) and parent.slice is node:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(parent)}")
            elif isinstance(parent, ast.Call) and node in parent.args and not _is_saltglue_call(parent):
                func = parent.func
                by_hand = (isinstance(func, ast.Attribute) and func.attr == "get") or (
                    isinstance(func, ast.Subscript) and ast.unparse(func.value) == "__salt__")
                if by_hand:
                    found.append(f"{filename}:{node.lineno}: {ast.unparse(parent)}")
    seen: dict[str, str] = {}  # one finding per line
    for item in found:
        seen.setdefault(item.split(": ", 1)[0], item)
    return sorted(seen.values())


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
    cache = salt.cache.Cache(__opts__), __opts__["cachedir"]
    if not target:
        raise ValueError("phoenix:deploy:target is not set")
    return phoenix.saltglue.settings(__opts__, __pillar__, "phoenix:aws"), phoenix.saltglue.emitter(__opts__, __salt__)
'''
    assert len(violations(bad, "bad.py")) == 4
    assert violations(good, "good.py") == []
