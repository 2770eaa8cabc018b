"""The sample web app every Phoenix instance serves (deployed by salt/webapp).

A small Flask app with a health route for the provisioning check. ``serve.py`` runs it with the Werkzeug
debugger on, the mistake the allowlist exists for: its ``/console`` and ``__debugger__`` requests must
only ever answer directly on the app's own port, never through NGINX.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify


def create_app() -> Flask:
    app = Flask(__name__)
    instance = os.environ.get("WEBAPP_INSTANCE", "unknown")

    @app.route("/")
    def index():
        return f"hello from {instance}\n"

    @app.route("/health")
    def health():
        """The provisioning health check: 200 with the instance the answer came from."""
        return jsonify(status="ok", instance=instance)

    @app.route("/items/<int:item_id>")
    def item(item_id: int):
        return jsonify(item=item_id)

    @app.route("/login", methods=["GET", "POST"])
    def login():
        return "login\n"

    return app
