"""One settings object, read from the environment.

The names and defaults below are the stack's public contract (README, .env.example, compose.yml),
so they are spelled exactly as the environment variables are.

Every setting X may instead come from a file named by X_FILE (the Docker secrets convention, as in
the postgres image): on a swarm `montero swarm deploy` mounts SECRET_KEY, MAIL_PASSWORD, REDIS_PASSWORD…
as secrets under /run/secrets and sets SECRET_KEY_FILE=/run/secrets/secret_key, so the values are not
in the service's environment (`docker service inspect` shows it to anyone with access to the manager).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

GENERATE_HINT = 'python -c "import secrets; print(secrets.token_hex(32))"'
MIN_SECRET_LENGTH = 32

#: Values that documentation, examples and tutorials put in SECRET_KEY. Compared case-insensitively;
#: a key that *contains* one of the markers is refused too ("change-me-to-something-long...").
#: The CLI's `env check` / `doctor` applies the same rule, so keep this the single list.
PLACEHOLDER_SECRETS: tuple[str, ...] = (
    "change-me",
    "changeme",
    "change_me",
    "changethis",
    "your-secret-key-here",
    "your-secret-key",
    "your_secret_key",
    "secret-key",
    "secret_key",
    "replace-me",
    "replace_me",
    "placeholder",
    "insecure",
    "dev-secret",
    "development",
    "example",
    "xxxxxxxx",
)
# Exact values too short or too generic to be used as substrings.
_PLACEHOLDER_EXACT: frozenset[str] = frozenset({"secret", "dev", "test", "password", "key", "none", "null"})

DEV_FALLBACK_SECRET = "montero-development-only-secret-do-not-use-in-production"


class ConfigError(RuntimeError):
    """The environment cannot run the app; the message is one line saying how to fix it."""


def secret_key_problem(value: str | None) -> str | None:
    """Why `value` is not acceptable as a production SECRET_KEY, or None when it is fine."""
    if not value:
        return "SECRET_KEY is not set"
    lowered = value.strip().lower()
    if lowered in _PLACEHOLDER_EXACT or any(marker in lowered for marker in PLACEHOLDER_SECRETS):
        return "SECRET_KEY is a documented placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"expected a boolean (true/false), got {raw!r}")


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"expected an integer, got {raw!r}") from None


@dataclasses.dataclass(frozen=True)
class Settings:
    SECRET_KEY: str | None = None
    FLASK_ENV: str = "production"
    DATABASE_URL: str = "sqlite:////app/data/mi_sistema.db"
    MAIL_SERVER: str = "smtp.gmail.com"
    MAIL_PORT: int = 587
    MAIL_USE_TLS: bool = True
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: str | None = None
    MAIL_DEFAULT_SENDER: str | None = None
    LOG_LEVEL: str = "INFO"
    TZ: str = "America/Bogota"
    RATELIMIT_STORAGE_URL: str | None = None
    # Redis's requirepass (`montero env init` generates it). Put into RATELIMIT_STORAGE_URL when that URL
    # carries no password of its own, so a .env from before the password keeps `redis://redis:6379/0`.
    REDIS_PASSWORD: str | None = None
    # Operational knobs beyond the list; defaults suit the container.
    LOG_DIR: str = "/app/logs"
    # The gunicorn master rotates montero-api.log past LOG_MAX_BYTES, keeping LOG_BACKUPS old files.
    LOG_MAX_BYTES: int = 10 * 1024 * 1024
    LOG_BACKUPS: int = 5
    MAX_CONTENT_LENGTH: int = 1024 * 1024
    SQLITE_BUSY_TIMEOUT_MS: int = 15000
    LOGIN_LIMIT_ACCOUNT: str = "5 per 15 minutes"
    LOGIN_LIMIT_ADDRESS: str = "30 per minute"
    DEFAULT_RATE_LIMIT: str = "600 per minute"
    AUTH_TOKEN_TTL_HOURS: int = 12
    PASSWORD_RESET_TTL_MINUTES: int = 30
    PASSWORD_RESET_LIMIT_ACCOUNT: str = "3 per hour"
    PUBLIC_BASE_URL: str = "http://localhost:5000"
    REGISTRATION_OPEN: bool = False
    TRUSTED_PROXY_COUNT: int = 0

    @property
    def is_production(self) -> bool:
        return self.FLASK_ENV != "development"

    @property
    def effective_secret_key(self) -> str:
        return self.SECRET_KEY or DEV_FALLBACK_SECRET

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Build settings from `environ` (default os.environ), then apply typed `overrides`."""
        env = _read_files(dict(os.environ if environ is None else environ), [f.name for f in dataclasses.fields(cls)])
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(field.name)
            if raw is None or raw.strip() == "":
                continue  # compose passes unset `${VAR:-}` as an empty string
            try:
                values[field.name] = _convert(field.type, raw)
            except ConfigError as exc:
                raise ConfigError(f"{field.name}: {exc}") from None
        for name, value in (overrides or {}).items():
            if name not in {f.name for f in dataclasses.fields(cls)}:
                continue  # plain Flask config keys (TESTING, ...) are applied by the factory
            field_type = next(f.type for f in dataclasses.fields(cls) if f.name == name)
            values[name] = _convert(field_type, value) if isinstance(value, str) else value
        url, password = values.get("RATELIMIT_STORAGE_URL"), values.get("REDIS_PASSWORD")
        if url and password:
            values["RATELIMIT_STORAGE_URL"] = with_redis_password(url, password)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.FLASK_ENV not in {"production", "development"}:
            raise ConfigError(f"FLASK_ENV must be 'production' or 'development', got {self.FLASK_ENV!r}")
        if self.is_production:
            problem = secret_key_problem(self.SECRET_KEY)
            if problem:
                raise ConfigError(f"{problem}; refusing to start in production. Generate one with: {GENERATE_HINT}")
        if self.LOG_MAX_BYTES < 1 or self.LOG_BACKUPS < 0:
            raise ConfigError("LOG_MAX_BYTES must be at least 1 and LOG_BACKUPS at least 0")
        try:
            ZoneInfo(self.TZ)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"TZ {self.TZ!r} is not a known time zone (e.g. America/Bogota)") from None

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, safe to log."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value and any(word in field.name for word in ("SECRET", "PASSWORD", "TOKEN")):
                value = "***"
            elif field.name in ("DATABASE_URL", "RATELIMIT_STORAGE_URL") and isinstance(value, str) and "@" in value:
                scheme, _, rest = value.partition("://")
                creds, _, host = rest.rpartition("@")
                user = creds.split(":", 1)[0]
                value = f"{scheme}://{user}:***@{host}"
            out[field.name] = value
        return out


FILE_SUFFIX = "_FILE"


def _read_files(env: dict[str, str], names: list[str]) -> dict[str, str]:
    """NAME_FILE=/path -> NAME=<the file's content>. Both set, or a file that cannot be read, is an error.

    One trailing newline is dropped (`echo value > file` and editors add it); nothing else is changed.
    The messages name the variable and the path, never the content.
    """
    for name in names:
        path = (env.get(name + FILE_SUFFIX) or "").strip()
        if not path:
            continue  # compose passes unset `${VAR:-}` as an empty string
        if (env.get(name) or "").strip():
            raise ConfigError(f"both {name} and {name}{FILE_SUFFIX} are set: keep one "
                              f"({name}{FILE_SUFFIX} names a file holding the value, e.g. a Docker secret)")
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"{name}{FILE_SUFFIX}={path} cannot be read ({reason}); "
                              f"mount the file readable by uid {os.getuid()} or set {name} instead") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{name}{FILE_SUFFIX}={path} is not UTF-8 text") from None
        value = text[:-1] if text.endswith("\n") else text
        value = value[:-1] if value.endswith("\r") else value
        if not value.strip():
            raise ConfigError(f"{name}{FILE_SUFFIX}={path} is empty; put the value in it or unset {name}{FILE_SUFFIX}")
        env[name] = value
    return env


def with_redis_password(url: str, password: str) -> str:
    """redis://redis:6379/0 + pw -> redis://:pw@redis:6379/0; a URL that names its own credentials is kept."""
    from urllib.parse import quote

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis", "rediss") or "@" in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://:{quote(password, safe='')}@{rest}"


def _convert(field_type: Any, raw: str) -> Any:
    text = str(field_type)
    if "bool" in text:
        return _bool(raw)
    if "int" in text:
        return _int(raw)
    return raw
