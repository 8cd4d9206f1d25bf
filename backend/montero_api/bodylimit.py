"""MAX_CONTENT_LENGTH for bodies that do not declare their length (`Transfer-Encoding: chunked`).

Werkzeug checks a declared Content-Length against the limit (413), but a chunked body is only cut at the
limit: the truncated JSON then failed to parse and the client got a misleading 400. This middleware reads
such a body up to one byte past the limit and hands Werkzeug a body of known length, so the usual 413 path
(the app's JSON error) applies to both kinds alike.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ChunkedBodyLimit:
    def __init__(self, app: WSGIApp, max_length: int | None) -> None:
        self.app = app
        self.max_length = max_length

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # Only servers that terminate the stream themselves (gunicorn: wsgi.input_terminated) may be read
        # without a length; elsewhere Werkzeug already treats such a body as empty.
        if (
            self.max_length is not None
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            and environ.get("wsgi.input_terminated")
        ):
            body = environ["wsgi.input"].read(self.max_length + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            # Over the limit, the declared length (limit + 1) makes Werkzeug answer 413 before reading.
            environ["CONTENT_LENGTH"] = str(len(body))
            # Werkzeug ignores CONTENT_LENGTH while the request says chunked; the body is plain bytes now.
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)
