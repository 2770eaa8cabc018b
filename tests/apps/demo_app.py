"""A sample Flask app with the Werkzeug debugger on: the allowlist demo and the tests serve it."""

from __future__ import annotations

import uuid

from flask import Blueprint, Flask, request
from werkzeug.routing import BaseConverter


class HexConverter(BaseConverter):
    """A custom converter: only its regex tells NGINX what it accepts."""

    regex = "[0-9a-f]{4,8}"


def create_app() -> Flask:
    app = Flask(__name__)
    app.url_map.converters["hex"] = HexConverter
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @app.route("/")
    def index():
        return "index"

    @app.route("/login", methods=["GET", "POST"])
    def login():
        return "login " + request.method

    @app.route("/about/")
    def about():
        return "about"

    @app.route("/item/<int:item_id>")
    def item(item_id: int):
        return f"item {item_id}"

    @app.route("/offset/<int(signed=True):n>")
    def offset(n: int):
        return f"offset {n}"

    @app.route("/year/<int(fixed_digits=4):y>/report")
    def report(y: int):
        return f"report {y}"

    @app.route("/price/<float:p>")
    def price(p: float):
        return f"price {p}"

    @app.route("/files/<path:sub>")
    def files(sub: str):
        return f"files {sub}"

    @app.route("/obj/<uuid:oid>")
    def obj(oid: uuid.UUID):
        return f"obj {oid}"

    @app.route("/lang/<string(length=2):code>")
    def lang(code: str):
        return f"lang {code}"

    @app.route("/tag/<string(minlength=3,maxlength=5):t>")
    def tag(t: str):
        return f"tag {t}"

    @app.route("/color/<any(red,green,blue):c>")
    def color(c: str):
        return f"color {c}"

    @app.route("/commit/<hex:sha>")
    def commit(sha: str):
        return f"commit {sha}"

    @app.route("/v<int:version>/status")
    def version_status(version: int):
        return f"v{version}"

    @app.route("/<username>")
    def profile(username: str):
        return f"profile {username}"

    @app.route("/delete/<int:item_id>", methods=["DELETE"])
    def delete(item_id: int):
        return f"deleted {item_id}"

    @api.route("/things/<name>/")
    def thing(name: str):
        return f"thing {name}"

    app.register_blueprint(api)
    return app


# `flask --app demo_app run --debug` and the tests' server wrap this app in Werkzeug's debugger
app = create_app()
