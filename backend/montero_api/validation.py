"""Request parsing: a JSON object body and typed fields, or a 400 naming every bad field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from flask import request

from .errors import APIError

# No whitespace, control characters or the separators that would let one address become several
# recipients (`a,b@x`, `<a>`), and exactly one @.
_EMAIL_ATOM = r'[^@\s,;:<>()\[\]\\"\x00-\x1f\x7f]+'
EMAIL_RE = re.compile(rf"^{_EMAIL_ATOM}@{_EMAIL_ATOM}\.{_EMAIL_ATOM}$")
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text: lone UTF-16 surrogates (valid JSON, but not encodable as
    UTF-8, so sqlite3, argon2 and HMAC would crash on them) or control characters other than tab/newline."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    for char in value:
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) in {"Cc", "Cs"}:
            return "must not contain control characters"
    return None


@dataclasses.dataclass(frozen=True)
class Field:
    kind: type  # str, int, bool or dt.date
    required: bool = False
    nullable: bool = False
    max_length: int = 200
    min_length: int = 0
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error message or None
    minimum: int = 0  # for int fields
    maximum: int = 2**31 - 1  # PostgreSQL's integer column; SQLite would take more, so both agree on this


def json_body() -> dict[str, Any]:
    """The request body as a JSON object. Reading it enforces MAX_CONTENT_LENGTH (413)."""
    try:
        data = request.get_json(force=True, silent=True)
    except RecursionError:  # absurdly nested JSON: the parser gives up, the client gets a 400
        data = None
    if not isinstance(data, dict):
        raise APIError(400, "Request body must be a JSON object.", code="invalid_json")
    return data


def parse(data: Mapping[str, Any], schema: Mapping[str, Field], partial: bool = False) -> dict[str, Any]:
    """Validate `data` against `schema`; with partial=True (PATCH) nothing is required but something must change."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for name in data:
        if name not in schema:
            errors[_printable(name)] = "unknown field"
    for name, field in schema.items():
        if name not in data:
            if field.required and not partial:
                errors[name] = "required"
            continue
        value = data[name]
        try:
            out[name] = _coerce(value, field)
        except ValueError as exc:
            errors[name] = str(exc)
    if partial and not out and not errors:
        raise APIError(400, "Nothing to update: send at least one field.", code="validation_error")
    if errors:
        raise APIError(400, "Invalid input.", code="validation_error", fields=errors)
    return out


def _coerce(value: Any, field: Field) -> Any:
    if value is None:
        if field.nullable and not field.required:
            return None
        raise ValueError("must not be null")
    if field.kind is bool:
        if not isinstance(value, bool):
            raise ValueError("must be a boolean")
        return value
    if field.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if value < field.minimum or value > field.maximum:
            raise ValueError("out of range")
        return value
    if field.kind is dt.date:
        if not isinstance(value, str):
            raise ValueError("must be a date string YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a date string YYYY-MM-DD") from None
    if not isinstance(value, str):
        raise ValueError("must be a string")  # noqa: TRY004 - ValueError is the field-error signal
    if len(value) > 10 * field.max_length:
        raise ValueError(f"must be at most {field.max_length} characters")
    if problem := text_problem(value):
        raise ValueError(problem)
    value = value.strip()
    if len(value) < max(field.min_length, 1 if field.required else 0):
        raise ValueError(f"must be at least {max(field.min_length, 1)} characters")
    if len(value) > field.max_length:
        raise ValueError(f"must be at most {field.max_length} characters")
    if field.choices is not None and value not in field.choices:
        raise ValueError(f"must be one of: {', '.join(field.choices)}")
    if field.check is not None:
        problem = field.check(value)
        if problem:
            raise ValueError(problem)
    return value


def _printable(name: str) -> str:
    # A field name is echoed back in the error; one that cannot be encoded is shown escaped.
    return name if text_problem(name) is None else name.encode("utf-8", "backslashreplace").decode("utf-8")[:100]


def check_email(value: str) -> str | None:
    return None if EMAIL_RE.match(value) else "must be an e-mail address"


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(400, f"Query parameter {name!r} must be an integer.", code="validation_error") from None
    if not minimum <= value <= maximum:
        raise APIError(
            400, f"Query parameter {name!r} must be between {minimum} and {maximum}.", code="validation_error"
        )
    return value


def query_bool(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise APIError(400, f"Query parameter {name!r} must be true or false.", code="validation_error")


def query_str(name: str, max_length: int = 200) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > max_length:
        raise APIError(400, f"Query parameter {name!r} is too long.", code="validation_error")
    if problem := text_problem(raw):
        raise APIError(400, f"Query parameter {name!r} {problem}.", code="validation_error", fields={name: problem})
    return raw.strip()
