"""A Flask app with no rules at all (no static folder either)."""

from flask import Flask

app = Flask(__name__, static_folder=None)
