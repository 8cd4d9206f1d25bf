"""Secret redaction: one rule set used wherever configuration is printed.

Shared by `env show`, `config`, `inspect`, backups, doctor and the error path, so a
secret hidden in one place is hidden in all of them.

Guessing secrets from names always misses one (`SMTP_PASS`, `API_AUTH`, …), so the
rule is the other way round (Kamal's clear/secret split): the stack's known settings
listed in CLEAR_SETTINGS, and the variables the base images set, are the only values
printed in clear; every other variable is a secret. A project declares more clear
names with `MONTERO_CLEAR_ENV=NAME,OTHER` in its .env. URLs of clear settings still
have their password masked, and known secret *values* are masked in any text montero
passes through from compose or docker (mask_values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "********"

# The stack's own non-secret settings (.env.example, docker/compose*.yml, the backend's settings).
CLEAR_SETTINGS = frozenset({
    "FLASK_ENV", "LOG_LEVEL", "TZ", "DATABASE_URL", "RATELIMIT_STORAGE_URL", "REDIS_URL", "DEFAULT_RATE_LIMIT",
    "MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_DEFAULT_SENDER",
    "PUBLIC_BASE_URL", "GUNICORN_WORKERS", "GUNICORN_BIND", "GUNICORN_TIMEOUT", "GUNICORN_THREADS",
    "GUNICORN_WORKER_CLASS", "FORWARDED_ALLOW_IPS", "SQLITE_BUSY_TIMEOUT_MS", "POSTGRES_DB", "POSTGRES_USER",
    "COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES",
    "MONTERO_PYTHON_IMAGE", "MONTERO_APP_IMAGE", "MONTERO_REDIS_IMAGE", "MONTERO_NGINX_IMAGE",
    "MONTERO_POSTGRES_IMAGE", "MONTERO_POSTGRES_BASE_IMAGE", "MONTERO_APP_PORTS", "MONTERO_HTTP_PORT",
    "MONTERO_HTTPS_PORT", "MONTERO_APP_REPLICAS", "MONTERO_APP_CPUS", "MONTERO_APP_CPU_RESERVATION",
    "MONTERO_APP_MEMORY", "MONTERO_APP_MEMORY_RESERVATION", "MONTERO_BUILD_PACKAGES", "MONTERO_CA_BUNDLE",
    "MONTERO_SERVER_NAME", "MONTERO_CLEAR_ENV",
    # Set by the base images (python, redis, nginx, postgres) and the shell: seen in `inspect`.
    "PATH", "HOME", "HOSTNAME", "LANG", "LC_ALL", "TERM", "PWD", "SHLVL", "USER",
    "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHON_VERSION", "PYTHON_SHA256", "PYTHON_PIP_VERSION",
    "PYTHON_SETUPTOOLS_VERSION", "PYTHON_GET_PIP_URL", "PYTHON_GET_PIP_SHA256", "PYTHONPATH", "VIRTUAL_ENV",
    "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "GPG_KEY",
    "NGINX_VERSION", "NJS_VERSION", "NJS_RELEASE", "PKG_RELEASE", "DYNPKG_RELEASE", "ACME_VERSION",
    "REDIS_VERSION", "REDIS_DOWNLOAD_URL", "REDIS_DOWNLOAD_SHA", "GOSU_VERSION",
    "PG_MAJOR", "PG_VERSION", "PGDATA",
})
# Values shorter than this are not masked inside free text: "1" or "true" would mangle everything.
MIN_MASKED_VALUE = 6
# URLs that may carry a password: postgresql://user:pw@host/db, redis://:pw@host
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)

_declared_clear: set[str] = set()
_known_secrets: set[str] = set()


def declare_clear(names: Iterable[str]) -> None:
    """More clear names for this run (a project's MONTERO_CLEAR_ENV)."""
    _declared_clear.update(n.strip().upper() for n in names if n.strip())


def forget() -> None:
    """Drop what learn_env/declare_clear remembered (tests; a second project in one process)."""
    _declared_clear.clear()
    _known_secrets.clear()


def is_secret(name: str) -> bool:
    """Every variable is a secret unless the stack declares it clear (a *_FILE names a path)."""
    upper = name.upper()
    return not (upper in CLEAR_SETTINGS or upper in _declared_clear or upper.endswith("_FILE"))


def learn_env(env: Mapping[str, str | None]) -> None:
    """Remember a .env's secret values (and its MONTERO_CLEAR_ENV) so mask_values hides them anywhere."""
    declare_clear((env.get("MONTERO_CLEAR_ENV") or "").split(","))
    for name, value in env.items():
        if value and is_secret(name):
            _known_secrets.add(value)


def _secret_fragments(secrets: Iterable[str], min_length: int) -> list[str]:
    """Whole values, and each line of a multi-line one (compose's YAML splits a PEM key into lines)."""
    parts: set[str] = set()
    for value in secrets:
        for piece in [value, *value.splitlines()]:
            piece = piece.strip()
            if len(piece) >= min_length:
                parts.add(piece)
    return sorted(parts, key=len, reverse=True)  # longest first: a value inside another is still masked


def mask_values(text: str, secrets: Iterable[str] | None = None, min_length: int = MIN_MASKED_VALUE) -> str:
    """Mask every known secret value (learn_env, or `secrets`) wherever it occurs in `text`."""
    for piece in _secret_fragments(_known_secrets if secrets is None else secrets, min_length):
        # Whole tokens only, so a weak key like "shorty" does not mangle "shortys".
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])", MASK, text)
    return text


def mask_strings(doc: Any) -> Any:
    """Every string of a JSON-like document with known secret values masked (inspect's Cmd, labels…)."""
    if isinstance(doc, dict):
        return {key: mask_strings(value) for key, value in doc.items()}
    if isinstance(doc, list):
        return [mask_strings(value) for value in doc]
    return mask_values(doc) if isinstance(doc, str) else doc


def redact_url(value: str) -> str:
    """Hide the password of a URL (user stays visible: it helps debugging)."""
    if not _URL_WITH_PASSWORD.match(value):
        return value
    parts = urlsplit(value)
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:{MASK}@{host}", parts.path, parts.query, parts.fragment))


def redact_value(name: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    if is_secret(name):
        return MASK
    if isinstance(value, str):
        return mask_values(redact_url(value))
    return value


def redact_env(env: dict[str, Any]) -> dict[str, Any]:
    """A copy of a NAME -> value mapping with secret values masked."""
    return {name: redact_value(name, value) for name, value in env.items()}


def redact_env_list(items: list[str]) -> list[str]:
    """Docker's `["NAME=value", …]` form (docker inspect Config.Env)."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        out.append(f"{name}{sep}{redact_value(name, value)}" if sep else item)
    return out


def redact_compose_config(config: Any) -> Any:
    """Walk a `docker compose config` document and mask every environment secret.

    `environment` may be a mapping or a list of NAME=value; build args and
    secrets' `environment` sources follow the same shapes.
    """
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for key, value in config.items():
            if key in ("environment", "args") and isinstance(value, dict):
                out[key] = redact_env(value)
            elif key in ("environment", "args") and isinstance(value, list):
                out[key] = redact_env_list([str(v) for v in value])
            else:
                out[key] = redact_compose_config(value)
        return out
    if isinstance(config, list):
        return [redact_compose_config(v) for v in config]
    if isinstance(config, str):
        return mask_values(redact_url(config))
    return config


_PLAIN = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_./@+:*=, -]*$")
_YAML_WORDS = frozenset({"", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n"})


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    plain = (_PLAIN.match(text) and text.lower() not in _YAML_WORDS and not text.endswith((":", " "))
             and ": " not in text and " #" not in text and not re.fullmatch(r"[-+0-9.eE]+", text))
    return text if plain else json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(doc: Any, indent: int = 0) -> str:
    """Render a parsed (already redacted) compose document as YAML: printed from the structure,
    so a multi-line value is one quoted scalar and never leaks line by line."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.append(to_yaml(value, indent + 1).rstrip("\n"))
            else:
                lines.append(f"{pad}{_scalar(key)}: {_scalar(value) if not isinstance(value, (dict, list)) else json.dumps(value)}")
    elif isinstance(doc, list):
        for value in doc:
            if isinstance(value, (dict, list)) and value:
                nested = to_yaml(value, indent + 1).rstrip("\n").splitlines()
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(value) if not isinstance(value, (dict, list)) else json.dumps(value)}")
    else:
        lines.append(f"{pad}{_scalar(doc)}")
    return "\n".join(lines) + "\n"


# Upper-case names only: environment variables, not YAML keys such as `image:` or `restart:`.
_ENV_LINE = re.compile(r"^(\s*(?:-\s*)?)([A-Z_][A-Z0-9_]*)(\s*[:=]\s*)(.*)$")


def redact_text(text: str) -> str:
    """Mask `NAME=value` / `NAME: value` lines of free text (YAML, .env, logs)."""
    lines = []
    for line in text.splitlines():
        m = _ENV_LINE.match(line)
        if m and is_secret(m.group(2)) and m.group(4).strip() not in ("", "{}", "[]"):
            lines.append(f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}")
        else:
            lines.append(re.sub(r"([a-z][a-z0-9+.-]*://[^/@\s:]*:)[^/@\s]*@", rf"\1{MASK}@", line))
    return mask_values("\n".join(lines) + ("\n" if text.endswith("\n") else ""))
