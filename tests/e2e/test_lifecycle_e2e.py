"""The stack's whole life through the real `montero` CLI on a real Docker Engine.

One isolated project (module scope) walks the steps in order, as a user would:
env init → build → up → API use → ps/health → logs → exec/migrate → scale → production
behind nginx → restart → down/up → down --volumes. Each step checks what the command
printed AND the state it left (docker inspect, HTTP answers, files on disk). Steps share
the stack to keep CI time down: the app image is built once per session and reused.
The failure paths (broken SECRET_KEY, no daemon, refused deletion, exec on a stopped
stack) follow; the ones that need their own stack use a function-scoped project.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

UP_BOUND = "240"  # seconds `montero up` may wait for health on a busy 2-core CI machine
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# What the steps learn and later steps check (token, ids, replica addresses).
SHARED: dict[str, Any] = {}
EMAIL = "operadora@montero.example"
PASSWORD = secrets.token_urlsafe(18)


# --- helpers -----------------------------------------------------------------------------

def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def ok(done: subprocess.CompletedProcess[str], project: Any = None) -> subprocess.CompletedProcess[str]:
    """Assert exit 0, showing the command's output (and the stack's logs) when not."""
    if done.returncode != 0:
        logs = f"\n--- stack logs ---\n{project.logs()}" if project is not None else ""
        pytest.fail(f"{done.args[5:]} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\n"
                    f"stderr:\n{done.stderr[-3000:]}{logs}", pytrace=False)
    return done


def containers(project_name: str, service: str | None = None) -> list[dict[str, Any]]:
    """`docker inspect` of the project's containers (all states), optionally one service's."""
    labels = ["--filter", f"label={PROJECT_LABEL}={project_name}"]
    if service:
        labels += ["--filter", f"label={SERVICE_LABEL}={service}"]
    ids = docker("ps", "-aq", *labels).stdout.split()
    if not ids:
        return []
    return json.loads(docker("inspect", *ids).stdout)


def health_of(info: dict[str, Any]) -> str | None:
    return ((info.get("State") or {}).get("Health") or {}).get("Status")


def api(project: Any, method: str, path: str, body: dict[str, Any] | None = None,
        token: str | None = None, base: str | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """One JSON request to the app on its published port (or to `base`, e.g. nginx)."""
    url = (base or project.url("", "app")) + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, dict(err.headers)
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text), headers
    except ValueError:
        return status, text, headers


def wait_stack_healthy(project: Any, expected: int, bound: float = 180) -> list[dict[str, Any]]:
    """Poll docker inspect until `expected` running containers are all healthy (or fail)."""
    deadline = time.monotonic() + bound
    seen: list[tuple[str, str, str | None]] = []
    while time.monotonic() < deadline:
        infos = containers(project.name)
        seen = [(i["Name"], i["State"]["Status"], health_of(i)) for i in infos]
        running = [i for i in infos if i["State"]["Status"] == "running"]
        if len(running) == expected and all(health_of(i) in ("healthy", None) for i in running):
            return running
        time.sleep(1)
    pytest.fail(f"stack not healthy after {bound:g}s: {seen}\n{project.logs()}", pytrace=False)


def client_names(project: Any, token: str, base: str | None = None) -> set[str]:
    status, body, _ = api(project, "GET", "/api/clients", token=token, base=base)
    assert status == 200, body
    return {c["name"] for c in body["items"]}


def db_rows(project: Any, table: str) -> int:
    """Rows in the SQLite file on the host's bind mount (read-only, as the app sees it)."""
    path = project.root / "data" / "mi_sistema.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture(scope="module")
def stack(module_stack_project: Any) -> Any:
    return module_stack_project


# --- the life of one stack, in order -----------------------------------------------------

def test_env_init_writes_a_private_env_with_a_strong_key(stack: Any) -> None:
    done = ok(stack.run_montero("env", "init"))
    env_file = stack.root / ".env"
    assert "created" in done.stderr and ".env" in done.stderr, done.stderr
    assert env_file.is_file()
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dict(ln.split("=", 1) for ln in env_file.read_text().splitlines() if "=" in ln and not ln.startswith("#"))
    assert re.fullmatch(r"[0-9a-f]{64}", values["SECRET_KEY"]), values["SECRET_KEY"]
    # The key is printed nowhere (stdout/stderr), only stored in the file.
    assert values["SECRET_KEY"] not in done.stdout + done.stderr
    # A second init refuses to overwrite (usage error), the key stays.
    again = stack.run_montero("env", "init")
    assert again.returncode == 2, again.stderr
    assert values["SECRET_KEY"] in env_file.read_text()
    # Open registration so the API can be used without a seeded admin; 2 workers per
    # replica keep three replicas light on a 2-core machine.
    stack.write_env(REGISTRATION_OPEN="true", GUNICORN_WORKERS="2")
    ok(stack.run_montero("env", "check"))


def test_build_produces_the_app_image(stack: Any) -> None:
    image = stack.env["MONTERO_APP_IMAGE"]
    done = ok(stack.run_montero("build", timeout=1200))
    assert "images built" in done.stderr, done.stderr
    inspect = docker("image", "inspect", image)
    assert inspect.returncode == 0, inspect.stderr
    config = json.loads(inspect.stdout)[0]["Config"]
    assert config["User"] == "appuser"
    assert "5000/tcp" in (config.get("ExposedPorts") or {})
    # montero build stamps the sources digest doctor's images.app compares by content.
    from montero_ops.services.sources import LABEL, sources_digest
    assert (config.get("Labels") or {}).get(LABEL) == sources_digest(stack.root)


def test_up_starts_a_healthy_stack(stack: Any) -> None:
    done = ok(stack.run_montero("up", "--timeout", UP_BOUND), stack)
    assert "stack is up" in done.stderr, done.stderr
    infos = containers(stack.name)
    assert sorted(i["Config"]["Labels"][SERVICE_LABEL] for i in infos) == ["app", "redis"]
    assert all(i["State"]["Status"] == "running" and health_of(i) == "healthy" for i in infos), \
        [(i["Name"], i["State"]["Status"], health_of(i)) for i in infos]
    # The app runs on the image built above, as uid 1000, with the data on the host.
    app = next(i for i in infos if i["Config"]["Labels"][SERVICE_LABEL] == "app")
    assert app["Config"]["Image"] == stack.env["MONTERO_APP_IMAGE"]
    # The app's own view: Redis reachable too. Its Redis probe times out after 1 s, so on a
    # loaded machine one answer may say "degraded"; the bound is what counts.
    health: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and health.get("status") != "ok":
        status, body, _ = stack.get("/health")
        assert status == 200, body
        health = json.loads(body)
        time.sleep(0 if health["status"] == "ok" else 1)
    if health.get("status") != "ok":
        probe = docker("exec", app["Id"], "python", "-c",
                       "import redis; print(redis.Redis.from_url('redis://redis:6379/0', socket_timeout=5).ping())")
        pytest.fail(f"/health: {health}\nping from app: {probe.stdout}{probe.stderr[-1500:]}\n"
                    f"{stack.logs(tail=30)}", pytrace=False)
    assert health["database"]["revision"], health
    assert (stack.root / "data" / "mi_sistema.db").is_file()


def test_register_and_login_through_the_api(stack: Any) -> None:
    status, body, _ = api(stack, "POST", "/api/auth/register",
                          {"email": EMAIL, "password": PASSWORD, "full_name": "Operadora E2E"})
    assert status == 201, body
    assert body["user"]["email"] == EMAIL
    status, body, _ = api(stack, "POST", "/api/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert status == 200, body
    token = body["token"]
    status, me, _ = api(stack, "GET", "/api/auth/me", token=token)
    assert status == 200 and me["user"]["email"] == EMAIL, me
    status, body, _ = api(stack, "POST", "/api/auth/login", {"email": EMAIL, "password": "wrong-" + PASSWORD})
    assert status == 401, body
    SHARED["token"] = token
    assert db_rows(stack, "users") == 1


def test_create_clients_and_affiliations(stack: Any) -> None:
    token = SHARED["token"]
    names = {"Textiles Andinos SAS": "900123456-1", "Café Montero Ltda": "800987654-2"}
    ids = []
    for name, nit in names.items():
        status, body, _ = api(stack, "POST", "/api/clients", {"name": name, "nit": nit, "city": "Bogotá"}, token)
        assert status == 201, body
        ids.append(body["client"]["id"])
    for n, client_id in enumerate(ids):
        status, body, _ = api(stack, "POST", f"/api/clients/{client_id}/affiliations", {
            "employee_name": f"Empleado {n}", "document_number": f"10{n:08d}", "eps": "Sura",
            "arl": "Positiva", "salary": 1_300_000 + n, "start_date": "2026-01-15",
        }, token)
        assert status == 201, body
    status, body, _ = api(stack, "POST", f"/api/clients/{ids[0]}/affiliations",
                          {"employee_name": "Dup", "document_number": "1000000000"}, token)
    assert status == 409, body
    assert client_names(stack, token) == set(names)
    status, body, _ = api(stack, "GET", f"/api/clients/{ids[0]}", token=token)
    assert status == 200 and body["client"]["affiliations_count"] == 1, body
    # The rows are in the SQLite file on the host's bind mount, not only in a container.
    assert db_rows(stack, "clients") == 2
    assert db_rows(stack, "affiliations") == 2
    SHARED["clients"] = set(names)


def test_ps_json_and_health_agree_with_docker_inspect(stack: Any) -> None:
    rows = json.loads(ok(stack.run_montero("ps", "--json")).stdout)
    infos = {i["Id"][:12]: i for i in containers(stack.name)}
    assert {r["id"] for r in rows} == set(infos)
    for row in rows:
        info = infos[row["id"]]
        assert row["name"] == info["Name"].lstrip("/")
        assert row["service"] == info["Config"]["Labels"][SERVICE_LABEL]
        assert row["state"] == info["State"]["Status"] == "running"
        assert row["health"] == health_of(info) == "healthy"
        assert row["restarts"] == info["RestartCount"]
        # The name, or the image id once the tag has moved on (what `docker ps` shows too).
        assert row["image"] in (info["Config"]["Image"], info["Image"])
    app_row = next(r for r in rows if r["service"] == "app")
    assert f"{stack.published_port()}->5000/tcp" in " ".join(app_row["ports"])
    report = json.loads(ok(stack.run_montero("health", "--json")).stdout)
    assert report["ok"] is True
    assert {s["service"]: (s["status"], s["containers"]) for s in report["services"]} == {
        "app": ("healthy", 1), "redis": ("healthy", 1)}
    plain = ok(stack.run_montero("health")).stdout
    assert "app" in plain and "redis" in plain and "healthy" in plain


def test_logs_since_holds_the_request_lines(stack: Any) -> None:
    out = ok(stack.run_montero("logs", "app", "--since", "10m")).stdout
    assert "POST /api/auth/register" in out, out[-2000:]
    assert "POST /api/auth/login" in out
    assert "POST /api/clients" in out
    # Only the app's lines: redis's startup banner is not there.
    assert "Ready to accept connections" not in out


def test_exec_and_migrate_current_show_the_head_revision(stack: Any) -> None:
    heads = ok(stack.run_montero("exec", "app", "--", "alembic", "heads")).stdout
    head = heads.split()[0]
    assert re.fullmatch(r"[0-9a-zA-Z_]+", head) and "(head)" in heads, heads
    code = ("import sqlite3; print(sqlite3.connect('/app/data/mi_sistema.db')"
            ".execute('select version_num from alembic_version').fetchone()[0])")
    stored = ok(stack.run_montero("exec", "app", "--", "python", "-c", code)).stdout.strip()
    assert stored == head
    current = ok(stack.run_montero("migrate", "current")).stdout
    assert f"{head} (head)" in current, current
    # The in-container exit code becomes montero's.
    failing = stack.run_montero("exec", "app", "--", "python", "-c", "import sys; sys.exit(7)")
    assert failing.returncode == 7, failing.stderr


def test_scale_app_to_three_healthy_replicas(stack: Any) -> None:
    done = ok(stack.run_montero("scale", "app=3", "--timeout", UP_BOUND), stack)
    assert "stack is up" in done.stderr, done.stderr
    apps = containers(stack.name, "app")
    assert len(apps) == 3
    assert all(i["State"]["Status"] == "running" and health_of(i) == "healthy" for i in apps)
    # Each replica answers on its own published port and sees the same data.
    ports = {stack.published_port("app", 5000, n) for n in (1, 2, 3)}
    assert len(ports) == 3
    for port in ports:
        assert client_names(stack, SHARED["token"], base=f"http://127.0.0.1:{port}") == SHARED["clients"]
    report = json.loads(ok(stack.run_montero("health", "--json")).stdout)
    assert {"service": "app", "status": "healthy", "containers": 3, "ok": True} in report["services"]


def test_production_profile_puts_nginx_in_front_of_all_replicas(stack: Any) -> None:
    done = ok(stack.run_montero("up", "--profile", "production", "--scale", "app=3", "--timeout", UP_BOUND),
              stack)
    assert "stack is up" in done.stderr, done.stderr
    nginx = containers(stack.name, "nginx")
    assert len(nginx) == 1 and health_of(nginx[0]) == "healthy"
    apps = containers(stack.name, "app")
    assert len(apps) == 3 and all(health_of(i) == "healthy" for i in apps)
    # In production only nginx publishes ports.
    assert all(not any(i["NetworkSettings"]["Ports"].get("5000/tcp") or []) for i in apps)
    addresses = {i["Id"]: next(iter(i["NetworkSettings"]["Networks"].values()))["IPAddress"] for i in apps}
    base = f"http://127.0.0.1:{stack.http_port}"
    # nginx re-resolves "app" every 5 s; Docker's DNS rotates the replicas, so keep asking
    # (bounded) until every replica has answered. X-Served-By names the upstream address.
    marker = uuid.uuid4().hex[:12]
    served: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and set(served) != set(addresses.values()):
        # The marker rides in the User-Agent: the access log records paths without their query
        # string (nothing a client puts in a query reaches a log line, docs/backend.md).
        status, body, headers = api(stack, "GET", "/health", base=base,
                                    headers={"User-Agent": f"montero-e2e-probe-{marker}"})
        if status != 200:
            states = [(i["Name"], i["State"]["Status"], health_of(i), i["RestartCount"])
                      for i in containers(stack.name)]
            pytest.fail(f"nginx answered {status} after {served}: {body}\n{states}\n"
                        f"{stack.logs('nginx', 'app', tail=40)}", pytrace=False)
        upstream = headers.get("X-Served-By", "").rsplit(":", 1)[0]
        served[upstream] = served.get(upstream, 0) + 1
        time.sleep(0.3)
    assert set(served) == set(addresses.values()), f"replicas {addresses}, nginx used {served}"
    # Corroborated by each replica's own access log.
    for container_id in addresses:
        logs = docker("logs", "--since", "10m", container_id)
        assert f"montero-e2e-probe-{marker}" in logs.stdout + logs.stderr, container_id[:12]
    assert client_names(stack, SHARED["token"], base=base) == SHARED["clients"]
    SHARED["app_ids"] = set(addresses)


def test_restart_keeps_containers_and_data(stack: Any) -> None:
    before = {i["Id"]: i["State"]["StartedAt"] for i in containers(stack.name)}
    ok(stack.run_montero("restart"), stack)
    running = wait_stack_healthy(stack, expected=5)
    after = {i["Id"]: i["State"]["StartedAt"] for i in running}
    # Same containers (restarted, not recreated), nginx included, each started anew.
    assert set(after) == set(before)
    assert all(after[cid] != before[cid] for cid in before)
    base = f"http://127.0.0.1:{stack.http_port}"
    status, body = stack.wait_http("/health", service="nginx", timeout=60)
    assert status == 200, body
    # The login session survived too (it lives in the database).
    assert client_names(stack, SHARED["token"], base=base) == SHARED["clients"]


def redis_cli(stack: Any, *args: str) -> str:
    """redis-cli inside the Redis container, authenticated the way its healthcheck is (Redis has a
    password when .env sets REDIS_PASSWORD; redis-cli exits 0 even on NOAUTH, so the reply is checked)."""
    script = '[ -z "$REDIS_PASSWORD" ] || export REDISCLI_AUTH="$REDIS_PASSWORD"; exec redis-cli "$@"'
    reply = ok(stack.run_montero("exec", "redis", "--", "sh", "-c", script, "redis-cli", *args)).stdout.strip()
    assert not reply.startswith(("NOAUTH", "ERR", "WRONGPASS")), reply
    return str(reply)


def test_down_then_up_keeps_the_data(stack: Any) -> None:
    assert redis_cli(stack, "SET", "e2e-marker", "kept") == "OK"
    assert redis_cli(stack, "SAVE") == "OK"
    done = ok(stack.run_montero("down"), stack)
    assert "stack removed" in done.stderr
    # down found the production variant itself: nginx is gone too.
    assert containers(stack.name) == []
    volumes = docker("volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={stack.name}").stdout.split()
    assert volumes == [f"{stack.name}_redis-data"]
    assert (stack.root / "data" / "mi_sistema.db").is_file()
    ok(stack.run_montero("up", "--timeout", UP_BOUND), stack)
    assert sorted(i["Config"]["Labels"][SERVICE_LABEL] for i in containers(stack.name)) == ["app", "redis"]
    assert client_names(stack, SHARED["token"]) == SHARED["clients"]
    assert db_rows(stack, "affiliations") == 2
    assert redis_cli(stack, "GET", "e2e-marker") == "kept"


def test_down_volumes_without_yes_refuses_and_keeps_everything(stack: Any) -> None:
    volume = f"{stack.name}_redis-data"
    done = stack.run_montero("down", "--volumes", input="")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert volume in done.stderr and "--yes" in done.stderr, done.stderr
    assert len([i for i in containers(stack.name) if i["State"]["Status"] == "running"]) == 2
    assert docker("volume", "inspect", volume).returncode == 0


def test_down_volumes_yes_removes_the_volumes(stack: Any) -> None:
    done = ok(stack.run_montero("down", "--volumes", "--yes"), stack)
    assert "with its volumes" in done.stderr, done.stderr
    assert containers(stack.name) == []
    listed = docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert [v for v in listed if v.startswith(f"{stack.name}_")] == []
    networks = docker("network", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={stack.name}").stdout.split()
    assert networks == []


def test_exec_on_a_stopped_stack_says_run_up_first(stack: Any) -> None:
    for args in (("exec", "app", "--", "true"), ("migrate", "current")):
        done = stack.run_montero(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert "is not running" in done.stderr and "montero up" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


# --- failure paths -----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("up",), ("down",), ("ps",), ("health",), ("build",), ("logs", "app"),
    ("exec", "app", "--", "true"), ("migrate", "current"), ("restart",),
], ids=lambda a: "-".join(a[:2]))
def test_daemon_unreachable_exits_3_with_the_fix(stack: Any, args: tuple[str, ...]) -> None:
    # A socket that does not exist is exactly what montero sees with dockerd stopped
    # (the shared daemon stays up for everything else running on this machine).
    nowhere = {"DOCKER_HOST": f"unix:///tmp/montero-e2e-{uuid.uuid4().hex[:8]}.sock"}
    done = stack.run_montero(*args, env=nowhere, timeout=120)
    assert done.returncode == 3, (args, done.stdout, done.stderr)
    assert "Error: the Docker" in done.stderr, done.stderr
    assert "Fix: start Docker" in done.stderr and "montero setup" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_up_with_a_short_secret_in_production_fails_with_the_reason(stack_project: Any) -> None:
    stack_project.write_env(FLASK_ENV="production", SECRET_KEY="short")
    done = stack_project.run_montero("up", "--timeout", "120")
    assert done.returncode == 1, (done.stdout, done.stderr)
    reason = "SECRET_KEY is shorter than 32 characters; refusing to start in production"
    assert reason in done.stderr, done.stderr
    # The app said it in one line (printed among the evidence), and montero ends with its own
    # error line, not a traceback of its own.
    assert next(ln for ln in done.stderr.splitlines() if reason in ln).strip().startswith("montero_api:")
    error_line = done.stderr.strip().splitlines()[-2]
    assert error_line.startswith("Error: service 'app'"), done.stderr[-500:]
    assert reason in error_line, error_line  # the app's reason is montero's own one line too
    assert "montero_ops" not in done.stderr
    app = containers(stack_project.name, "app")
    assert app and all(health_of(i) != "healthy" for i in app)
