"""Swarm secrets and configs of a stack: the app's secrets as files, names versioned by content.

Two problems with what `docker stack deploy` does by itself (issue 21 point 7):
 - a value in a service's `environment` is readable by anyone who may run `docker service inspect`
   on a manager. SECRET_KEY, MAIL_PASSWORD and REDIS_PASSWORD therefore travel as swarm secrets,
   mounted under /run/secrets, and the service's environment holds only their paths (SECRET_KEY_FILE,
   read by the backend's settings and by Redis's start line);
 - secrets and configs are immutable: a stack whose config is named `nginx_conf` cannot be
   redeployed after nginx.conf changed ("only updates to Labels are allowed"). Every name here
   carries a digest of its content, so a change is a new object and a rolling update of the services
   that use it; an unchanged file keeps its name and changes nothing.
Objects no service of the stack refers to any more (neither its spec nor its previous spec, which
`swarm rollback` returns to) are removed after a deploy (`prune`).

Secret names carry an HMAC keyed by SECRET_KEY, not a plain hash: a short SHA-256 of a weak mail
password in a name anyone may list would let them test guesses offline.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops.errors import UsageError

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from montero_ops.project import Project

DIGEST_LENGTH = 12
SECRETS_DIR = "/run/secrets"
APP_UID = "1000"  # the image's appuser (docker/Dockerfile)
# setting -> (file name under /run/secrets, the services that read it)
SECRET_SETTINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SECRET_KEY": ("secret_key", ("app",)),
    "MAIL_PASSWORD": ("mail_password", ("app",)),
    "REDIS_PASSWORD": ("redis_password", ("app", "redis")),
}
REQUIRED = ("SECRET_KEY",)
# Who reads each service's secret files: the app as its user, Redis's start line as root before it drops to redis.
SERVICE_UID = {"app": APP_UID, "redis": "0"}
_VERSIONED = re.compile(rf"_[0-9a-f]{{{DIGEST_LENGTH}}}$")


@dataclass
class StackObjects:
    """What montero adds to the stack: secrets (name -> value) and configs (key -> (name, file))."""

    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # never printed: values
    roles: dict[str, str] = field(default_factory=dict)  # secret name -> setting (SECRET_KEY …)
    configs: dict[str, tuple[str, Path]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted([*self.secrets, *(name for name, _ in self.configs.values())])


def _digest(data: bytes, key: bytes | None = None) -> str:
    if key is None:
        return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:DIGEST_LENGTH]


def secret_values(project: Project, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secret settings to mount: from .env, else montero's environment; empty ones are left out."""
    from montero_ops.services import envfile

    environ = os.environ if environ is None else environ
    dotenv = envfile.read(project) if project.env_file.is_file() else {}
    values = {}
    for name in SECRET_SETTINGS:
        value = dotenv.get(name) or environ.get(name) or ""
        if value:
            values[name] = value
    for name in REQUIRED:
        if name not in values:
            raise UsageError(f"{name} is not set in {project.env_file}: the app refuses to start in production "
                             "without it", hint="`montero env init` generates one")
    problem = envfile.secret_key_problem(project, values["SECRET_KEY"])
    if problem:
        raise UsageError(f"{problem}: the app refuses to start in production with it",
                         hint="`montero env init --force` generates a new one (it logs everyone out)")
    return values


def compose_version(stack_file: Path) -> str:
    """The file's `version:` (montero's layer must say the same: docker refuses mixed versions)."""
    import yaml  # type: ignore[import-untyped]  # no stubs in the venv; only safe_load is used

    data = yaml.safe_load(stack_file.read_text()) or {}
    return str(data.get("version") or "3.9")


def stack_configs(stack_files: list[Path]) -> dict[str, Path]:
    """The `configs:` with a `file:` declared by the stack files (key -> absolute path), later files win."""
    import yaml

    found: dict[str, Path] = {}
    for stack_file in stack_files:
        data = yaml.safe_load(stack_file.read_text()) or {}
        for key, spec in (data.get("configs") or {}).items():
            if isinstance(spec, dict) and spec.get("file") and not spec.get("external"):
                found[str(key)] = (stack_file.parent / str(spec["file"])).resolve()
    return found


def plan(project: Project, stack: str, stack_files: list[Path],
         environ: Mapping[str, str] | None = None) -> StackObjects:
    """Every object's name: STACK_<secret or config>_<digest of the content>."""
    values = secret_values(project, environ)
    key = values["SECRET_KEY"].encode()
    objects = StackObjects()
    for setting, value in values.items():
        filename = SECRET_SETTINGS[setting][0]
        digest = _digest(setting.encode() + b"\0" + value.encode(), key)
        name = f"{stack}_{filename}_{digest}"
        objects.secrets[name] = value
        objects.roles[name] = setting
    for config_key, path in stack_configs(stack_files).items():
        if not path.is_file():
            raise UsageError(f"{path} is missing (config {config_key} of the stack)",
                             hint="it ships with montero's docker/ folder")
        objects.configs[config_key] = (f"{stack}_{config_key}_{_digest(path.read_bytes())}", path)
    return objects


def write_secret_files(objects: StackObjects, folder: Path) -> dict[str, Path]:
    """Each secret in a file only its owner reads (docker reads them once, at deploy), in FOLDER."""
    paths = {}
    for name, value in objects.secrets.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value)
        paths[name] = path
    return paths


def add_to_layer(layer: dict[str, Any], objects: StackObjects, secret_files: Mapping[str, Path]) -> dict[str, Any]:
    """The secrets (mounted, with their *_FILE variables) and the versioned configs, in montero's layer."""
    services: dict[str, Any] = layer.setdefault("services", {})
    declared: dict[str, Any] = layer.setdefault("secrets", {})
    for name, setting in sorted(objects.roles.items()):
        filename, readers = SECRET_SETTINGS[setting]
        declared[name] = {"name": name, "file": str(secret_files[name])}
        for service in readers:
            spec = services.setdefault(service, {})
            uid = SERVICE_UID[service]
            spec.setdefault("secrets", []).append(
                {"source": name, "target": filename, "uid": uid, "gid": uid, "mode": 0o400})
            spec.setdefault("environment", {})[f"{setting}_FILE"] = f"{SECRETS_DIR}/{filename}"
    if objects.configs:
        configs: dict[str, Any] = layer.setdefault("configs", {})
        for key, (name, path) in sorted(objects.configs.items()):
            configs[key] = {"name": name, "file": str(path)}
    return layer


# --- cleanup ------------------------------------------------------------------------------------

def referenced(services: list[dict[str, Any]]) -> set[str]:
    """Secret and config names the services use now or would return to on a rollback (PreviousSpec)."""
    names: set[str] = set()
    for service in services:
        for spec in (service.get("Spec") or {}, service.get("PreviousSpec") or {}):
            container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
            names.update(s.get("SecretName", "") for s in container.get("Secrets") or [])
            names.update(c.get("ConfigName", "") for c in container.get("Configs") or [])
    names.discard("")
    return names


def stale(stack: str, existing: list[str], services: list[dict[str, Any]]) -> list[str]:
    """The stack's versioned objects (STACK_…_<digest>) no service refers to any more."""
    used = referenced(services)
    return sorted(n for n in existing if n.startswith(f"{stack}_") and _VERSIONED.search(n) and n not in used)


def prune(client: DockerClient, stack: str, services: list[dict[str, Any]],
          progress: Callable[[str], None] = lambda _m: None) -> list[str]:
    """Remove the stack's secrets and configs that neither a spec nor a previous spec uses; the names removed."""
    from python_on_whales.exceptions import DockerException

    from montero_ops.services.dockercmd import docker

    removed = []
    label = f"com.docker.stack.namespace={stack}"
    listed = {"secret": [s.spec.name for s in client.secret.list(filters=[("label", label)]) if s.spec],
              "config": [c.spec.name for c in client.config.list(filters={"label": label}) if c.spec]}
    for kind, found in listed.items():
        names = [str(name) for name in found if name]
        for name in stale(stack, names, services):
            try:
                docker(client, kind, "rm", name)
            except DockerException:
                continue  # in use by a task still shutting down: the next deploy removes it
            removed.append(name)
            progress(f"removed the old {kind} {name}")
    return removed
