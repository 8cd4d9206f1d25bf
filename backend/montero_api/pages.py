"""GET /reset-password: the one HTML page, where the link in a reset mail lands (issue 12 point 2b).

The token is in the URL fragment (`/reset-password#token=...`), never in a query: the page's script reads it in
the browser, so the server, its access log and any proxy never see it. The files are static and served from the
package (montero_api/static), with the page's Content-Security-Policy (headers.py: script and style from this
origin only, requests only here) and no caching of the page itself.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response

_FILES = {
    "reset-password.html": "text/html; charset=utf-8",
    "reset-password.js": "text/javascript; charset=utf-8",
    "reset-password.css": "text/css; charset=utf-8",
}


def _load(name: str) -> bytes:
    return resources.files("montero_api").joinpath("static", name).read_bytes()


def build_blueprint() -> Blueprint:
    bp = Blueprint("pages", __name__)
    contents = {name: _load(name) for name in _FILES}  # read once: three small files

    def serve(name: str) -> Response:
        response = Response(contents[name], content_type=_FILES[name])
        response.headers["Cache-Control"] = "no-store" if name.endswith(".html") else "public, max-age=3600"
        return response

    bp.add_url_rule("/reset-password", "reset_page", lambda: serve("reset-password.html"), methods=["GET"])
    bp.add_url_rule("/reset-password.js", "reset_script", lambda: serve("reset-password.js"), methods=["GET"])
    bp.add_url_rule("/reset-password.css", "reset_style", lambda: serve("reset-password.css"), methods=["GET"])
    return bp
