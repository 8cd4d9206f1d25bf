"""Security headers on every response.

A JSON API needs no scripts, styles, frames or referrers: `default-src 'none'` and no framing. The one HTML
page (/reset-password) loads its script and style from this origin only and posts only here; its token is in
the URL fragment, which browsers never send in a Referer, and `no-referrer` keeps even the path out of others'
logs.
"""

from __future__ import annotations

from flask import Flask, Response

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Content-Security-Policy", PAGE_CSP if response.mimetype == "text/html" else API_CSP)
        headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response
