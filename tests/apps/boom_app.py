"""An app whose routes fail: with the debugger on, each 500 is a traceback page carrying the debugger's SECRET."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)
calls = {"n": 0}


@app.route("/boom")
def boom():
    calls["n"] += 1
    raise RuntimeError("boom")


@app.route("/boom/<int:n>", methods=["GET", "POST"])
def boom_n(n: int):
    calls["n"] += 1
    raise RuntimeError(f"boom {n}")


@app.route("/fail", methods=["GET", "POST"])
def fail():
    calls["n"] += 1
    raise RuntimeError("fail")


@app.route("/calls")
def count():
    return str(calls["n"])


@app.route("/ok")
def ok():
    return "ok"
