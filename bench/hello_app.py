"""The ceiling of figure 7: a bare Flask app with nothing behind it.

Served by the app image's gunicorn with the same gunicorn.conf.py, worker count and
CPU/memory limits as the real app (bench/figures_http.py: HelloApp), so the difference
between the two is what the real app does per request (database, Redis, limiter, logs).
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/health")
def health():  # type: ignore[no-untyped-def]
    return jsonify(status="ok")


@app.get("/")
def hello():  # type: ignore[no-untyped-def]
    return "hello\n"
