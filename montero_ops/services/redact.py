"""Secret redaction: one rule set used wherever configuration is printed.

Shared by `env show`, `config`, `inspect`, backups and doctor, so a secret hidden
in one place is hidden in all of them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "********"

# Variable names whose values are secrets. KEY matches SECRET_KEY, API_KEY, …;
# the explicit allow-list below keeps harmless *_KEY-looking names readable.
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL|PRIVATE)", re.IGNORECASE)
_NOT_SECRET = frozenset({"KEY_PREFIX", "CACHE_KEY_PREFIX", "SECRET_KEY_FILE", "PASSWORD_FILE"})
# URLs that may carry a password: postgresql://user:pw@host/db, redis://:pw@host
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)


def is_secret(name: str) -> bool:
    upper = name.upper()
    return upper not in _NOT_SECRET and bool(_SECRET_NAME.search(upper))


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
        return redact_url(value)
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
        return redact_url(config)
    return config


_ENV_LINE = re.compile(r"^(\s*(?:-\s*)?)([A-Za-z_][A-Za-z0-9_]*)(\s*[:=]\s*)(.*)$")


def redact_text(text: str) -> str:
    """Mask `NAME=value` / `NAME: value` lines of free text (YAML, .env, logs)."""
    lines = []
    for line in text.splitlines():
        m = _ENV_LINE.match(line)
        if m and is_secret(m.group(2)) and m.group(4).strip() not in ("", "{}", "[]"):
            lines.append(f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}")
        else:
            lines.append(re.sub(r"([a-z][a-z0-9+.-]*://[^/@\s:]*:)[^/@\s]*@", rf"\1{MASK}@", line))
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
