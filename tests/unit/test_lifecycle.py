"""build, up, down, start/stop/restart, scale through the real Typer app."""

from __future__ import annotations

from pathlib import Path

from python_on_whales.exceptions import DockerException

from tests.unit.conftest import DockerCalls, FakeEngine, compose_prefix, container


def _runs(docker: DockerCalls) -> list[list[str]]:
    """The calls that act; `up` first reads `compose config` (the Redis volume's owner, services/redis_volume.py)."""
    return [c for c in docker.calls if "config" not in c[-3:]]

def test_build_all_without_cache(cli, docker: DockerCalls, prefix: list[str]) -> None:
    result = cli("build", "--no-cache")
    assert result.exit_code == 0, result.output
    assert docker.calls == [prefix + ["build", "--no-cache"]]


def test_build_one_service(cli, docker: DockerCalls, prefix: list[str]) -> None:
    assert cli("build", "app").exit_code == 0
    assert docker.calls == [prefix + ["build", "app"]]


def test_up_waits_for_health(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str], project: Path) -> None:
    engine.timeline = [
        [container("app", health="starting"), container("redis", health="healthy")],
        [container("app", health="healthy"), container("redis", health="healthy")],
    ]
    result = cli("up", "--build")
    assert result.exit_code == 0, result.output
    # Before `up`, the compose config is read once (the Redis volume goes to the redis user first).
    assert _runs(docker) == [prefix + ["up", "--build", "--detach"]]
    assert docker.calls[-1] == prefix + ["up", "--build", "--detach"]
    assert "stack is up: 2 containers, 2 healthy" in result.stderr
    assert "open http://localhost:5000/health" in result.stderr
    assert (project / "data").is_dir() and (project / "logs").is_dir()


def test_the_address_is_nginx_in_production_else_the_lowest_app_port() -> None:
    from montero_ops.services.stack import address
    from montero_ops.services.status import ContainerStatus

    def c(service: str, *ports: str) -> ContainerStatus:
        return ContainerStatus(service, f"x-{service}-1", "id", "running", "healthy", 0, None, "img", list(ports))

    assert address([c("app", "0.0.0.0:5003->5000/tcp"), c("app", "0.0.0.0:5001->5000/tcp"), c("redis")]) == \
        "http://localhost:5001/health"
    assert address([c("app"), c("nginx", "0.0.0.0:80->80/tcp", "0.0.0.0:443->443/tcp")]) == "https://localhost/health"
    assert address([c("app"), c("nginx", "127.0.0.1:8080->80/tcp")]) == "http://localhost:8080/health"
    assert address([c("app", "5000/tcp"), c("redis")]) is None


def test_up_env_file_and_scale(cli, docker: DockerCalls, engine: FakeEngine, project: Path) -> None:
    (project / ".env").write_text("SECRET_KEY=x\n")
    engine.set(container("app"))
    assert cli("up", "--scale", "app=3").exit_code == 0
    assert _runs(docker) == [compose_prefix(project, env_file=True) + ["up", "--detach", "--scale", "app=3"]]


def test_up_production_profile_adds_the_production_file(cli, docker: DockerCalls, engine: FakeEngine,
                                                          project: Path) -> None:
    production = project / "docker" / "compose.production.yml"
    production.write_text("services: {}\n")
    engine.set(container("app"))
    assert cli("up", "--profile", "production", "--no-wait").exit_code == 0
    assert _runs(docker) == [compose_prefix(project, profiles=("production",), files=(production,)) + ["up", "--detach"]]
    assert engine.polls == 0


def test_up_unhealthy_prints_logs_and_probes(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    probe = [{"ExitCode": 1, "Output": "Traceback (most recent call last):\n  File x\nurlopen error [Errno 111] Connection refused\n"}]
    engine.set(container("app", health="unhealthy", health_log=probe), container("redis"))
    docker.respond(lambda c: "logs" in c, "boom: cannot import montero_api\nTraceback line\n")
    result = cli("up")
    assert result.exit_code == 1, result.stderr
    assert _runs(docker)[1] == prefix + ["logs", "--no-color", "--tail", "30", "--no-log-prefix", "app"]
    assert "  boom: cannot import montero_api" in result.stderr
    assert "exit 1: urlopen error [Errno 111] Connection refused" in result.stderr
    assert "Error: service 'app' is unhealthy" in result.stderr


def test_up_timeout(cli, docker: DockerCalls, engine: FakeEngine, monkeypatch) -> None:
    ticks = iter(range(0, 1000, 5))
    monkeypatch.setattr("montero_ops.services.stack._clock", lambda: float(next(ticks)))
    engine.set(container("app", health="starting"))
    result = cli("up", "--timeout", "12")
    assert result.exit_code == 1
    assert "Error: service 'app' is not healthy after 12s (starting)" in result.stderr


def test_up_compose_failure_shows_evidence(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    failure = DockerException(["docker", "compose", "up"], 1, b"", b"dependency failed to start: container shop-redis-1 is unhealthy")
    docker.respond(lambda c: "up" in c, failure)
    engine.set(container("redis", health="unhealthy"))
    result = cli("up")
    assert result.exit_code == 1
    assert "Last 0 log lines of redis" in result.stderr
    assert "Error: dependency failed to start: container shop-redis-1 is unhealthy" in result.stderr


def test_up_rejects_bad_scale(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    result = cli("up", "--scale", "app3")
    assert result.exit_code == 2
    assert "Error: invalid scale 'app3': expected SERVICE=N, e.g. app=3" in result.stderr
    assert docker.calls == []


def test_scale(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    engine.set(container("app", 1), container("app", 2), container("app", 3))
    result = cli("scale", "app=3")
    assert result.exit_code == 0, result.output
    assert _runs(docker) == [prefix + ["up", "--detach", "--scale", "app=3"]]


def test_down(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    engine.set(container("app"), container("redis"))
    assert cli("down").exit_code == 0
    assert docker.calls == [prefix + ["down", "--remove-orphans"]]


def test_down_includes_production_when_nginx_runs(cli, docker: DockerCalls, engine: FakeEngine, project: Path) -> None:
    engine.set(container("app"), container("nginx"))
    assert cli("down").exit_code == 0
    assert docker.calls == [compose_prefix(project, profiles=("production",)) + ["down", "--remove-orphans"]]


def test_down_volumes_refuses_without_yes_when_not_interactive(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    engine.volumes = ["shop_redis-data"]
    result = cli("down", "--volumes")
    assert result.exit_code == 2
    assert "  shop_redis-data" in result.stderr
    assert "Error: refusing to delete 1 volume(s): shop_redis-data without confirmation" in result.stderr
    assert "Fix: pass --yes to confirm" in result.stderr
    assert docker.calls == []


def test_down_volumes_yes(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    engine.volumes = ["shop_redis-data"]
    result = cli("down", "--volumes", "--yes")
    assert result.exit_code == 0
    assert docker.calls == [prefix + ["down", "--remove-orphans", "--volumes"]]


def test_down_volumes_interactive_no(cli, docker: DockerCalls, engine: FakeEngine, monkeypatch) -> None:
    engine.volumes = ["shop_redis-data"]
    monkeypatch.setattr("montero_ops.commands._common.interactive", lambda: True)
    result = cli("down", "--volumes", input="n\n")
    assert result.exit_code == 1
    assert docker.calls == []


def test_start_stop_restart(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    for action in ("start", "stop", "restart"):
        docker.calls.clear()
        assert cli(action, "app").exit_code == 0
        assert docker.calls == [prefix + [action, "app"]]
    docker.calls.clear()
    assert cli("stop").exit_code == 0
    assert docker.calls == [prefix + ["stop"]]


def test_up_stops_waiting_on_a_crash_loop(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    engine.timeline = [[container("app", health="starting", restarts=n)] for n in (0, 1, 2, 3)]
    result = cli("up")
    assert result.exit_code == 1
    assert "Error: service 'app' keeps restarting (2 restarts while waiting)" in result.stderr


def test_scale_keeps_production_mode(cli, docker: DockerCalls, engine: FakeEngine, project: Path) -> None:
    production = project / "docker" / "compose.production.yml"
    production.write_text("services: {}\n")
    engine.set(container("app"), container("nginx"))
    assert cli("scale", "app=2", "--no-wait").exit_code == 0
    assert _runs(docker) == [compose_prefix(project, profiles=("production",), files=(production,))
                            + ["up", "--detach", "--scale", "app=2"]]


def test_crash_loop_error_line_carries_the_apps_own_reason(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    engine.timeline = [[container("app", health="starting", restarts=n)] for n in (0, 1, 2, 3)]
    reason = "montero_api: configuration error: SECRET_KEY is shorter than 32 characters; refusing to start"
    docker.respond(lambda c: "logs" in c, f"[INFO] Starting gunicorn\n{reason}\n[INFO] Shutting down: Master\n")
    result = cli("up")
    assert result.exit_code == 1
    assert f"Error: service 'app' keeps restarting (2 restarts while waiting): {reason}" in result.stderr


def test_up_does_not_call_a_damaged_database_healthy(cli, docker: DockerCalls, engine: FakeEngine,
                                                     project: Path) -> None:
    """Issue 22 point 6: healthy containers on a database that fails integrity_check (a damaged
    index passes quick_check and the app's /health) are not a healthy stack: exit 1, the line says why."""
    from tests.unit.test_backup_support import damaged_index

    damaged_index(project / "data" / "mi_sistema.db")
    engine.timeline = [[container("app", health="healthy"), container("redis", health="healthy")]]
    result = cli("up")
    assert result.exit_code == 1, result.output
    assert "stack is up" not in result.stderr
    assert result.stderr.splitlines()[-2] == (
        "Error: the containers are up (2, 2 healthy), but mi_sistema.db fails PRAGMA integrity_check: row 1 missing "
        "from index ix_clients_name; row 2 missing from index ix_clients_name; row 3 missing from index ix_clients_name")


def test_up_failure_shows_the_crash_looping_service_not_the_stopped_one(cli, docker: DockerCalls,
                                                                        engine: FakeEngine) -> None:
    """Issue 22 point 9: after `stop`, the app is exited (its stale logs), Redis crash-loops on a
    damaged AOF: up must show Redis, the service that fails now, even when compose names no container."""
    failure = DockerException(["docker", "compose", "up"], 1, b"", b"Error response from daemon: something failed")
    docker.respond(lambda c: "up" in c, failure)
    engine.set(container("app", state="exited", health=None, exit_code=137),
               container("redis", state="restarting", health=None, restarts=4, exit_code=1))
    result = cli("up")
    assert result.exit_code == 1
    assert "Last 0 log lines of redis" in result.stderr and "log lines of app" not in result.stderr


def test_up_failure_shows_the_container_compose_names(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    failure = DockerException(["docker", "compose", "up"], 1, b"",
                              b"dependency failed to start: container shop-redis-1 exited (1)")
    docker.respond(lambda c: "up" in c, failure)
    engine.set(container("app", state="exited", health=None, exit_code=1),
               container("redis", state="exited", health=None, exit_code=1))
    result = cli("up")
    assert result.exit_code == 1
    assert "Last 0 log lines of redis" in result.stderr and "log lines of app" not in result.stderr
    assert "Error: dependency failed to start: container shop-redis-1 exited (1)" in result.stderr


def test_up_names_a_crash_loop_between_two_runs_when_compose_gave_no_words(cli, docker: DockerCalls,
                                                                           engine: FakeEngine) -> None:
    """Issue 22 point 9 as the e2e met it: compose printed its error itself (nothing captured) and,
    when montero looked, Docker had already restarted Redis (running, health starting, 1 restart).
    The app, exited from the stop, is not the cause: Redis's own line is the error."""
    failure = DockerException(["docker", "compose", "up"], 1, None, None)
    docker.respond(lambda c: "up" in c, failure)
    docker.respond(lambda c: "logs" in c, "1:M 02 Dec 2026 20:23:01.1 * Reading RDB base file on AOF loading...\n"
                   "1:M 02 Dec 2026 20:23:01.1 # Bad file format reading the append only file "
                   "appendonly.aof.1.incr.aof: make a backup of your AOF file, then use ./redis-check-aof --fix "
                   "<filename.manifest>\n")
    engine.set(container("app", state="exited", health=None, exit_code=137),
               container("redis", state="running", health="starting", restarts=1, exit_code=0))
    result = cli("up")
    assert result.exit_code == 1
    assert "log lines of redis" in result.stderr and "log lines of app" not in result.stderr
    assert result.stderr.splitlines()[-2].startswith(
        "Error: service 'redis' keeps restarting: 1:M 02 Dec 2026 20:23:01.1 # Bad file format reading the append "
        "only file appendonly.aof.1.incr.aof"), result.stderr


def test_up_ignores_the_stale_health_of_a_stopped_app(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    """A stopped container keeps the health of its last probes ('unhealthy' as it went down): that
    is not what fails now; the crash-looping Redis is."""
    docker.respond(lambda c: "up" in c, DockerException(["docker", "compose", "up"], 1, None, None))
    engine.set(container("app", state="exited", health="unhealthy", exit_code=0),
               container("redis", state="running", health="starting", restarts=2, exit_code=0))
    result = cli("up")
    assert result.exit_code == 1
    assert "log lines of redis" in result.stderr and "log lines of app" not in result.stderr
    assert result.stderr.splitlines()[-2].startswith("Error: service 'redis' keeps restarting"), result.stderr
