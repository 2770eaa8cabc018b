"""Stand-alone route extractor, run by the *app's own* Python interpreter.

    /srv/app/venv/bin/python extract_routes.py 'package.module:app'
    /srv/app/venv/bin/python extract_routes.py 'package.module:create_app("prod")'

It imports the app (from the working directory), reads ``app.url_map`` and prints one JSON
document on stdout. It imports nothing from Phoenix or Salt: the app's virtualenv has neither.
Werkzeug's own parse of every rule (``Rule._trace`` and ``Rule._converters``) is reported, not a
re-parse, so the rule syntax is always the one the app uses. Anything the app prints while it is
imported goes to stderr, so it cannot corrupt the JSON.

Exit codes: 0 routes printed; 2 bad spec; 3 the app failed to import or to build; 4 not a Flask/
Werkzeug app. On failure the JSON document is ``{"error": {"kind": ..., "message": ..., "detail": ...}}``.
"""

from __future__ import annotations

import gc
import importlib
import keyword
import os
import sys
import time

SCHEMA = 1


def _fail(out, code: int, kind: str, message: str, detail: str = "", exception: str = "") -> None:
    import json

    error = {"kind": kind, "message": message, "detail": detail, "exception": exception}
    out.write(json.dumps({"schema": SCHEMA, "error": error}))
    out.flush()
    sys.exit(code)


def _parse_spec(spec: str):
    """``module``, ``module:attr`` or ``module:factory(literal, args)`` -> (module, attr, args, kwargs, call)."""
    module, _, attr = spec.partition(":")
    if not module or not all(p.isidentifier() for p in module.split(".")):
        raise ValueError(f"module part {module!r} is not a dotted Python name")
    if not attr:
        return module, None, (), {}, False
    if attr.strip().isidentifier() and not keyword.iskeyword(attr.strip()):
        return module, attr.strip(), (), {}, False
    import ast  # only a factory call needs the parser

    try:
        expr = ast.parse(attr.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"attribute part {attr!r} is not a name or a call: {exc.msg}") from None
    if isinstance(expr, ast.Name):
        return module, expr.id, (), {}, False
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        try:
            args = tuple(ast.literal_eval(a) for a in expr.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in expr.keywords}
        except ValueError:
            raise ValueError(f"factory arguments in {attr!r} must be Python literals") from None
        return module, expr.func.id, args, kwargs, True
    raise ValueError(f"attribute part {attr!r} must be a name or a factory call like create_app()")


def _find_app(mod, attr, args, kwargs, call, factory: bool):
    if attr is None:
        for name in ("app", "application"):
            if hasattr(mod, name):
                return getattr(mod, name)
        for name in ("create_app", "make_app"):
            if callable(getattr(mod, name, None)):
                return getattr(mod, name)()
        raise LookupError(f"module {mod.__name__!r} has no 'app', 'application', 'create_app' or 'make_app'")
    if not hasattr(mod, attr):
        raise LookupError(f"module {mod.__name__!r} has no attribute {attr!r}")
    obj = getattr(mod, attr)
    if call or factory:
        obj = obj(*args, **kwargs)
    return obj


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return repr(value)


_CLASSES: dict = {}  # converter class -> (name, module, its Werkzeug bases)
_ARGS = ("fixed_digits", "min", "max", "signed")


_MISSING = object()


def _converter(conv, table: list, index: dict) -> int:
    """The index of ``conv``'s description in ``table`` (added once for each distinct converter)."""
    cls = type(conv)
    regex = getattr(conv, "regex", "[^/]+")
    isolating = getattr(conv, "part_isolating", None)
    values = tuple(getattr(conv, name, _MISSING) for name in _ARGS)
    key = (cls, regex, isolating, values)
    try:
        found = index.get(key)
    except TypeError:  # an argument that cannot be hashed: compared by its text
        key = (cls, regex, isolating, repr(values))
        found = index.get(key)
    if found is None:
        if isolating is None:  # Werkzeug < 2.2: every converter is matched by one big regex
            isolating = "/" not in regex
        known = _CLASSES.get(cls)
        if known is None:  # once per class: thousands of rules share a few converter classes
            known = _CLASSES[cls] = (cls.__name__, cls.__module__,
                                     [c.__name__ for c in cls.__mro__ if c.__module__.startswith("werkzeug.")])
        found = index[key] = len(table)
        table.append({"class": known[0], "module": known[1], "bases": known[2], "regex": regex,
                      "part_isolating": bool(isolating),
                      "args": {n: _jsonable(v) for n, v in zip(_ARGS, values) if v is not _MISSING}})
    return found


#: what most rules say: a rule of the extractor's JSON leaves out each of these keys that says the same, so a
#: reader takes ``rule.get(key, RULE_DEFAULTS[key])``
RULE_DEFAULTS = {"strict_slashes": True, "merge_slashes": True, "websocket": False, "build_only": False,
                 "redirect_to": False, "subdomain": "", "host": ""}
_DEFAULT_VALUES = tuple(RULE_DEFAULTS.values())


def expand(doc: dict) -> dict:
    """The extractor's JSON with each rule's converters and methods written out, not numbered (in place).

    The JSON describes each distinct converter once, in ``converter_table``, and each distinct list of
    methods once, in ``methods_table``; a rule names their indices. This puts them in their place (shared
    dicts and lists: read-only).
    """
    table = doc.pop("converter_table", None)
    methods = doc.pop("methods_table", None)
    if table is not None:
        for rule in doc["rules"]:
            if rule["converters"]:
                rule["converters"] = {name: table[i] for name, i in rule["converters"].items()}
            if methods is not None and rule["methods"] is not None:
                rule["methods"] = methods[rule["methods"]]
    return doc


def _debugger_console(app) -> str | None:
    """The console path of a Werkzeug DebuggedApplication wrapped around the app, if any."""
    seen = 0
    wsgi = getattr(app, "wsgi_app", None)
    while wsgi is not None and seen < 20:
        if hasattr(wsgi, "console_path") and hasattr(wsgi, "evalex"):
            return getattr(wsgi, "console_path", None)
        wsgi = getattr(wsgi, "app", None) or getattr(wsgi, "wsgi_app", None)
        seen += 1
    return None


def describe(url_map, app=None, compact: bool = False) -> dict:
    """The route table of a Werkzeug ``Map`` (importable by tests without a subprocess).

    A rule leaves out the keys that say what ``RULE_DEFAULTS`` says. ``compact``: as the extractor
    prints it, each distinct converter described once in ``converter_table`` and each distinct list of
    methods once in ``methods_table``, named by their indices (``expand`` puts them back): 0.65 instead
    of 2.0 MB at 5,000 rules, and a fifth of the time to read.
    """
    try:
        import werkzeug

        wz_version = getattr(werkzeug, "__version__", None)
        if wz_version is None:
            from importlib.metadata import version

            wz_version = version("werkzeug")
    except Exception:  # pragma: no cover - an app without werkzeug has no url_map
        wz_version = None
    rules = []
    converters: list = []
    index: dict = {}
    methods_table: list = []  # each distinct method list once (most rules share a few)
    methods_index: dict = {}
    # iter_rules() first builds the Map's matcher for the requests the app never serves here (a third of
    # the time at 5,000 rules); it then iterates over the same list, in the same order
    added = getattr(url_map, "_rules", None)
    for rule in added if isinstance(added, list) else url_map.iter_rules():
        methods = rule.methods
        if methods is not None:
            key = frozenset(methods)
            methods = methods_index.get(key)
            if methods is None:
                methods = methods_index[key] = len(methods_table)
                methods_table.append(sorted(key))
        out = {
            "rule": rule.rule,  # (not the endpoint: nothing reads it, and it is a tenth of the JSON)
            "methods": methods,  # an index into methods_table, or None (any method)
            "trace": rule._trace,  # (is_dynamic, text) pairs, written as JSON arrays as they are
            "converters": {name: _converter(conv, converters, index) for name, conv in rule._converters.items()},
        }
        values = (bool(rule.strict_slashes), bool(getattr(rule, "merge_slashes", True)),
                  bool(getattr(rule, "websocket", False)), bool(rule.build_only), rule.redirect_to is not None,
                  rule.subdomain or "", getattr(rule, "host", None) or "")
        if values != _DEFAULT_VALUES:  # most rules: nothing to add
            for key, value, default in zip(RULE_DEFAULTS, values, _DEFAULT_VALUES):
                if value != default:
                    out[key] = value
        rules.append(out)
    doc = {
        "schema": SCHEMA,
        "app": None,
        "python": sys.executable,
        "werkzeug": wz_version,
        "host_matching": bool(getattr(url_map, "host_matching", False)),
        "merge_slashes": bool(getattr(url_map, "merge_slashes", True)),
        "console_path": _debugger_console(app) if app is not None else None,
        "rules": rules,
        "converter_table": converters,
        "methods_table": methods_table,
    }
    return doc if compact else expand(doc)


def main(argv: list[str]) -> None:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the app prints goes to stderr
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.getcwd())
    if len(argv) < 2:
        _fail(out, 2, "spec", "usage: extract_routes.py MODULE[:ATTR|:FACTORY(...)] [--factory]")
    spec = argv[1]
    factory = "--factory" in argv[2:]
    try:
        parsed = _parse_spec(spec)
    except ValueError as exc:
        _fail(out, 2, "spec", f"app spec {spec!r}: {exc}")
    started = time.perf_counter()
    started_cpu = time.process_time()
    try:
        mod = importlib.import_module(parsed[0])
        app = _find_app(mod, *parsed[1:], factory=factory)
    except BaseException as exc:  # the app's own code may raise anything, even SystemExit
        import traceback

        _fail(
            out,
            3,
            "import",
            f"app {spec!r} failed to import in {os.getcwd()!r}: {type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(exc)[-12:]),
            type(exc).__name__,
        )
    import_seconds = time.perf_counter() - started
    import_cpu_seconds = time.process_time() - started_cpu
    url_map = getattr(app, "url_map", None)
    if url_map is None or not hasattr(url_map, "iter_rules"):
        _fail(out, 4, "not_an_app", f"app {spec!r} resolved to {type(app).__name__}, which has no url_map")
    # the cyclic GC would traverse the app and every rule object again and again while thousands of
    # small dicts are made (two thirds of the time at 5,000 rules); this process ends right after
    gc.disable()
    doc = describe(url_map, app=app, compact=True)
    doc.update(app=spec, import_seconds=import_seconds, import_cpu_seconds=import_cpu_seconds,
               extract_seconds=time.perf_counter() - started - import_seconds)
    import json  # after the app's import, which has usually made it already: nothing of ours before it

    out.write(json.dumps(doc, separators=(",", ":")))
    out.flush()
    os._exit(0)  # skip tearing down the app's objects: nothing of ours is left to clean up


if __name__ == "__main__":
    main(sys.argv)
