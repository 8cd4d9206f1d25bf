"""Static checks of the Docker files: what issue 2 asks of them, without a Docker Engine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that understands compose's `!reset` / `!override` tags."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        value: Any = loader.construct_sequence(node)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return {"__tag__": suffix, "value": value}


_ComposeLoader.add_multi_constructor("!", _tagged)


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(DOCKER / "compose.yml")


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile_is_multistage_with_overridable_base(dockerfile: str) -> None:
    first_from = dockerfile.index("\nFROM ")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile[:first_from], re.MULTILINE)
    stages = re.findall(r"^FROM \$\{PYTHON_IMAGE\} AS (\w+)$", dockerfile, re.MULTILINE)
    assert stages == ["builder", "runtime"]


def test_runtime_copies_only_the_venv_and_the_code(dockerfile: str) -> None:
    runtime = dockerfile.split("AS runtime", 1)[1].split("\nFROM runtime AS test", 1)[0]
    copies = re.findall(r"^COPY (.+)$", runtime, re.MULTILINE)
    assert copies == [
        "--from=builder /opt/venv /opt/venv",
        "backend/ /app/",
        "docker/entrypoint.sh /usr/local/bin/montero-entrypoint",
    ]
    assert "apt-get" not in runtime, "compilers belong to the builder stage"


def test_requirements_installed_before_code_without_pip_cache(dockerfile: str) -> None:
    builder = dockerfile.split("AS runtime", 1)[0]
    assert "python3 -m venv /opt/venv" in builder
    req = builder.index("COPY backend/requirements.txt")
    install = builder.index("pip install --no-cache-dir -r /tmp/requirements.txt")
    assert req < install
    assert dockerfile.index("COPY backend/ /app/") > install


def test_test_stage_is_last_and_compose_builds_the_runtime(dockerfile: str, compose: dict[str, Any]) -> None:
    """Docker builds the last stage by default: the test stage is last, so compose pins runtime."""
    assert re.findall(r"^FROM .*$", dockerfile, re.MULTILINE)[-1] == "FROM runtime AS test"
    test = dockerfile.split("\nFROM runtime AS test", 1)[1]
    assert "pip install --no-cache-dir -r /tmp/requirements-test.txt" in test
    assert "--mount=type=secret,id=ca_certs,required=false" in test
    assert re.findall(r"^USER (\w+)$", test, re.MULTILINE)[-1] == "appuser"
    assert compose["services"]["app"]["build"]["target"] == "runtime"
    tests_reqs = (REPO / "backend" / "requirements-test.txt").read_text()
    assert {"pytest", "pytest-cov", "requests", "aiosmtpd"} <= {
        re.split(r"[<>=\[]", line, 1)[0] for line in tests_reqs.splitlines() if line and not line.startswith("#")}


def test_ca_certificates_come_as_a_build_secret_only(dockerfile: str) -> None:
    assert "--mount=type=secret,id=ca_certs,required=false" in dockerfile
    assert "PIP_CERT=/run/secrets/ca_certs" in dockerfile
    assert not re.search(r"^(COPY|ADD) .*(\.crt|\.pem|ca-cert)", dockerfile, re.MULTILINE | re.IGNORECASE)


def test_runtime_user_env_and_healthcheck(dockerfile: str) -> None:
    assert re.search(r"useradd --uid 1000 --gid 1000 .*appuser", dockerfile)
    assert re.search(r"^USER appuser$", dockerfile, re.MULTILINE)
    assert "PYTHONUNBUFFERED=1" in dockerfile and "PYTHONDONTWRITEBYTECODE=1" in dockerfile
    health = re.search(r"^HEALTHCHECK .*\n.*$", dockerfile, re.MULTILINE)
    assert health and "urllib.request" in health.group(0) and "/health" in health.group(0)
    assert re.search(r'^ENTRYPOINT \["montero-entrypoint"\]$', dockerfile, re.MULTILINE)


# ---------------------------------------------------------------- entrypoint

def test_entrypoint_migrates_under_a_lock_then_execs_gunicorn() -> None:
    path = DOCKER / "entrypoint.sh"
    text = path.read_text()
    assert path.stat().st_mode & 0o111, "entrypoint.sh must be executable"
    assert text.startswith("#!/bin/sh\n") and "set -eu" in text
    assert "mkdir -p \"$DATA_DIR\" \"$LOGS_DIR\"" in text
    assert re.search(r"flock -w \S+ \"\$DATA_DIR/\.migrate\.lock\" alembic upgrade head", text)
    assert "SECRET_KEY is not set" in text
    assert "REDIS_WAIT_TIMEOUT" in text
    # The fast path (backend/migrations/at_head.py, tested in tests/backend) skips Alembic only on a yes.
    assert "if python migrations/at_head.py 2>/dev/null; then" in text
    assert text.rstrip().endswith("exec gunicorn -c gunicorn.conf.py wsgi:app")
    if shutil.which("sh"):
        assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0


# ---------------------------------------------------------------- compose.yml

def test_every_image_is_overridable(compose: dict[str, Any]) -> None:
    images = {name: svc["image"] for name, svc in compose["services"].items()}
    assert images == {
        "app": "${MONTERO_APP_IMAGE:-${COMPOSE_PROJECT_NAME}-app:latest}",
        "redis": "${MONTERO_REDIS_IMAGE:-redis:7-alpine}",
        "nginx": "${MONTERO_NGINX_IMAGE:-nginx:alpine}",
    }
    build = compose["services"]["app"]["build"]
    assert build["context"] == "." and build["dockerfile"] == "docker/Dockerfile"
    assert build["args"]["PYTHON_IMAGE"] == "${MONTERO_PYTHON_IMAGE:-python:3.11-slim}"
    assert build["secrets"] == ["ca_certs"]


def test_app_can_scale_and_is_locked_down(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    assert "container_name" not in app
    # Published on loopback by default (issue 12 point 4): the internet reaches gunicorn only through nginx.
    assert app["ports"] == ["${MONTERO_APP_BIND:-127.0.0.1}:${MONTERO_APP_PORTS:-5000-5009}:5000"]
    assert app["restart"] == "unless-stopped"
    assert app["env_file"] == [{"path": ".env", "required": False}]
    assert app["volumes"] == ["./data:/app/data", "./logs:/app/logs"]
    assert app["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert app["read_only"] is True and app["tmpfs"] == ["/tmp"]
    assert "no-new-privileges:true" in app["security_opt"]
    assert app["cap_drop"] == ["ALL"]
    res = app["deploy"]["resources"]
    assert res["limits"]["cpus"] == "${MONTERO_APP_CPUS:-2}" and res["limits"]["memory"] == "${MONTERO_APP_MEMORY:-1G}"
    assert res["reservations"] == {"cpus": "1", "memory": "512M"}
    assert "/health" in " ".join(app["healthcheck"]["test"])


def test_the_app_probe_is_cheap_and_checks_the_status(compose: dict[str, Any]) -> None:
    """A probe is a `docker exec` every interval per replica: bash's /dev/tcp, not a Python interpreter,
    and it passes on a 200 only (a 503 from /health, database down, must make the replica unhealthy)."""
    check = compose["services"]["app"]["healthcheck"]
    assert check["test"][:3] == ["CMD", "bash", "-c"]
    script = check["test"][3]
    assert "/dev/tcp/127.0.0.1/5000" in script and "GET /health HTTP/1.0" in script
    assert '[ "$$code" = 200 ]' in script and "read -r -t 4" in script
    assert check["interval"] == "4s" and check["timeout"] == "5s"
    if shutil.which("bash"):
        _probe_answers(script.replace("$$", "$"))


def _probe_answers(script: str) -> None:
    """The probe against a real HTTP server on loopback: 200 passes; 503, 404 and a closed port fail."""
    import http.server
    import threading

    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        def probe(target: str) -> int:
            return subprocess.run(["bash", "-c", target], capture_output=True, timeout=10, check=False).returncode

        ours = script.replace("/dev/tcp/127.0.0.1/5000", f"/dev/tcp/127.0.0.1/{port}")
        assert probe(ours) == 0
        status["code"] = 503
        assert probe(ours) != 0
        assert probe(ours.replace("GET /health", "GET /nowhere")) != 0
    finally:
        server.shutdown()
        server.server_close()
    assert probe(ours) != 0  # nothing listens any more


def test_app_environment_uses_defaults(compose: dict[str, Any]) -> None:
    env = compose["services"]["app"]["environment"]
    for key in ("FLASK_ENV", "SECRET_KEY", "DATABASE_URL", "RATELIMIT_STORAGE_URL", "LOG_LEVEL", "TZ",
                "MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS", "MAIL_USERNAME", "MAIL_PASSWORD", "MAIL_DEFAULT_SENDER"):
        assert re.fullmatch(rf"\$\{{{key}:-[^}}]*\}}", str(env[key])), key
    assert env["DATABASE_URL"] == "${DATABASE_URL:-sqlite:////app/data/mi_sistema.db}"


def test_every_service_has_healthcheck_and_rotated_logs(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert svc.get("healthcheck", {}).get("test"), name
        assert svc["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}, name


def test_redis_and_nginx(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "redis-server --appendonly yes --maxmemory 256mb --maxmemory-policy allkeys-lru" in command
    assert redis["volumes"] == ["redis-data:/data"] and "redis-data" in compose["volumes"]
    assert redis["healthcheck"]["test"][0] == "CMD-SHELL" and "redis-cli ping" in redis["healthcheck"]["test"][1]
    # Issue 21.3: non-root, read-only, no capabilities, a password from the environment, never published.
    assert redis["user"] == "redis" and redis["read_only"] is True and redis["cap_drop"] == ["ALL"]
    assert "cap_add" not in redis and "ports" not in redis
    assert '--requirepass "$$REDIS_PASSWORD" --protected-mode yes' in command
    assert redis["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:-}"
    assert compose["services"]["app"]["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:-}"
    nginx = compose["services"]["nginx"]
    assert nginx["profiles"] == ["production"]
    assert "./docker/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["ports"] == ["${MONTERO_HTTP_PORT:-80}:80", "${MONTERO_HTTPS_PORT:-443}:443"]


def test_every_service_has_a_pids_limit_and_cpu_memory_limits(compose: dict[str, Any]) -> None:
    """Issue 21.3: doctor --production's prod.limits, and no unbounded pid table use."""
    for name, service in compose["services"].items():
        limits = service["deploy"]["resources"]["limits"]
        assert isinstance(limits.get("pids"), int) and 0 < limits["pids"] <= 1024, name
        assert limits.get("memory") and limits.get("cpus"), name


def test_production_override_unpublishes_the_app() -> None:
    override = _load(DOCKER / "compose.production.yml")
    assert override["services"]["app"]["ports"] == {"__tag__": "reset", "value": []}


# ---------------------------------------------------------------- nginx.conf

def test_nginx_conf_runs_in_alpine_and_debian_and_follows_replicas() -> None:
    conf = (DOCKER / "nginx" / "nginx.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    assert not re.search(r"^\s*user\s", code, re.MULTILINE), "no user directive: the images' default users differ"
    assert re.search(r"^\s*pid /tmp/", code, re.MULTILINE)
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", code)
    assert re.search(r"set \$(\w+) http://app:5000;", code)
    assert re.search(r"proxy_pass \$\w+;", code)
    for header in ("Host $host", "X-Real-IP $remote_addr",
                   "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header};" in code
    assert re.search(r"location /static/ \{\s*alias ", code)


# ---------------------------------------------------------------- .dockerignore, .env.example

def test_dockerignore_keeps_secrets_and_state_out() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    for pattern in ("__pycache__/", "*.pyc", ".git/", ".env", "venv/", "*.log", "node_modules/",
                    "data/", "logs/", "backups/", "tests/", ".venv/"):
        assert pattern in lines, pattern
    # Exclusions must come after the allow-list lines, or the allow-list would let them back in.
    last_allow = max(i for i, ln in enumerate(lines) if ln.startswith("!"))
    assert lines.index(".env") > last_allow and lines.index("**/.env") > last_allow


def test_env_example_has_placeholders_only() -> None:
    values = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    for key in ("SECRET_KEY", "FLASK_ENV", "DATABASE_URL", "MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS",
                "MAIL_USERNAME", "MAIL_PASSWORD", "MAIL_DEFAULT_SENDER", "LOG_LEVEL", "TZ", "RATELIMIT_STORAGE_URL"):
        assert key in values, key
    assert values["MAIL_PASSWORD"] == "" and values["MAIL_USERNAME"] == ""
    assert "change-me" in values["SECRET_KEY"]
    text = (REPO / ".env.example").read_text()
    assert not re.search(r"\b[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4}\b", text), "looks like a mail app password"
    assert not re.search(r"[\w.]+@gmail\.com", text)


# ---------------------------------------------------------------- scripts

@pytest.mark.parametrize("script", ["scripts/setup.sh", "scripts/bootstrap-images.sh", "scripts/test.sh", ".ci/run"])
def test_scripts_parse_and_are_executable(script: str) -> None:
    path = REPO / script
    assert path.stat().st_mode & 0o111, f"{script} must be executable"
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0


def test_bootstrap_takes_the_mirror_from_apt_config() -> None:
    text = (REPO / "scripts" / "bootstrap-images.sh").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"https?://[a-z0-9.-]+\.(org|com|net)", code), "no hard-coded mirror"
    assert "/etc/apt/sources.list" in code and "VERSION_CODENAME" in code
    for package in ("python3", "python3-venv", "python3-pip", "redis-server", "nginx", "sqlite3",
                    "netcat-openbsd", "ca-certificates"):
        assert re.search(rf"[\",]{re.escape(package)}[\",]", text), package


def test_app_build_carries_the_sources_label(compose: dict[str, Any]) -> None:
    # stamp_sources() only sets the variable; without this label doctor's images.app never sees
    # the digest and falls back to file times (a fresh copy of the project then looks stale).
    from montero_ops.services.sources import ENV_VAR, LABEL

    labels = compose["services"]["app"]["build"]["labels"]
    assert labels[LABEL] == "${" + ENV_VAR + ":-}"
