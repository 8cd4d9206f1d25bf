"""config, dev, inspect, prune, version."""

from __future__ import annotations

import json
from pathlib import Path

from tests.throwaway_keys import throwaway_pem
from tests.unit.conftest import DockerCalls, FakeEngine, compose_prefix, container, json_out

CONFIG = {
    "name": "shop",
    "services": {
        "app": {
            "environment": {"SECRET_KEY": "abc", "FLASK_ENV": "production",
                            "DATABASE_URL": "postgresql://u:pw@db/x", "MAIL_PASSWORD": ""},
            "build": {"args": {"API_TOKEN": "t0k"}},
        }
    },
}
PEM = throwaway_pem()


def test_config_json_redacted(cli, docker: DockerCalls, prefix: list[str]) -> None:
    docker.respond(lambda c: "config" in c, json.dumps(CONFIG))
    result = cli("config", "--json")
    assert result.exit_code == 0
    assert docker.calls == [prefix + ["config", "--format", "json"]]
    app = json_out(result)["services"]["app"]
    assert app["environment"] == {"SECRET_KEY": "********", "FLASK_ENV": "production",
                                  "DATABASE_URL": "postgresql://u:********@db/x", "MAIL_PASSWORD": ""}
    assert app["build"]["args"] == {"API_TOKEN": "********"}


def test_config_yaml_redacted(cli, docker: DockerCalls, prefix: list[str]) -> None:
    docker.respond(lambda c: "config" in c, json.dumps(CONFIG))
    result = cli("config")
    assert result.exit_code == 0
    assert docker.calls == [prefix + ["config", "--format", "json"]]
    assert "      SECRET_KEY: \"********\"\n" in result.stdout
    assert "      DATABASE_URL: postgresql://u:********@db/x\n" in result.stdout
    assert "      FLASK_ENV: production\n" in result.stdout
    assert "abc" not in result.stdout and "pw@" not in result.stdout and "t0k" not in result.stdout


def test_config_hides_every_line_of_a_multi_line_secret(cli, docker: DockerCalls, project: Path) -> None:
    """Issue 12.8: compose prints a PEM key as a block scalar; masking line by line left its body in clear."""
    (project / ".env").write_text(f'JWT_PRIVATE_KEY="{PEM}"\nSMTP_PASS=hunter2-smtp\n')
    doc = {"name": "shop", "services": {"app": {
        "environment": {"JWT_PRIVATE_KEY": PEM, "SMTP_PASS": "hunter2-smtp", "FLASK_ENV": "production"},
        "command": ["gunicorn", "--key", PEM], "labels": {"note": "pass=hunter2-smtp"}}}}
    docker.respond(lambda c: "config" in c, json.dumps(doc))
    for args in (("config",), ("config", "--json")):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        for line in PEM.splitlines() + ["hunter2-smtp"]:
            assert line not in result.stdout, (args, line)
        assert "production" in result.stdout
    app = json_out(cli("config", "--json"))["services"]["app"]
    assert app["environment"] == {"JWT_PRIVATE_KEY": "********", "SMTP_PASS": "********", "FLASK_ENV": "production"}
    assert app["labels"] == {"note": "pass=********"}


def test_dev_writes_an_override_outside_docker(cli, docker: DockerCalls, engine: FakeEngine, project: Path,
                                               tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    engine.set(container("app"))
    result = cli("dev", "--detach")
    assert result.exit_code == 0, result.output
    [override] = list((tmp_path / "state" / "montero").glob("shop-*/compose.dev.yml"))
    # `up` reads compose config first (the Redis volume owner, services/redis_volume.py).
    assert [c for c in docker.calls if "config" not in c[-3:]] == [compose_prefix(project, files=(override,)) + ["up", "--detach"]]
    app = json.loads(override.read_text())["services"]["app"]
    assert app["command"] == ["flask", "--app", "wsgi", "run", "--reload", "--host", "0.0.0.0", "--port", "5000"]
    assert app["environment"]["FLASK_ENV"] == "development"
    assert app["volumes"] == [{"type": "bind", "source": str(project / "backend"), "target": "/app"}]
    assert sorted(p.name for p in (project / "docker").iterdir()) == ["compose.yml"]


def test_inspect_env_redacted(cli, engine: FakeEngine) -> None:
    engine.set(container("app", env=["SECRET_KEY=abc", "FLASK_ENV=production", "REDIS_URL=redis://:pw@redis:6379/0"]))
    result = cli("inspect", "app", "--env")
    assert result.exit_code == 0
    assert json_out(result) == [{"Name": "shop-app-1", "Env": [
        "SECRET_KEY=********", "FLASK_ENV=production", "REDIS_URL=redis://:********@redis:6379/0"]}]


def test_inspect_full_and_network(cli, engine: FakeEngine) -> None:
    engine.set(container("app", env=["MAIL_PASSWORD=x"]), container("redis"))
    full = json_out(cli("inspect"))
    assert [d["Name"] for d in full] == ["/shop-app-1", "/shop-redis-1"]
    assert full[0]["Config"]["Env"] == ["MAIL_PASSWORD=********"]
    network = json_out(cli("inspect", "redis", "--network"))
    assert network == [{"Name": "shop-redis-1", "Networks": {"shop_default": {"IPAddress": "172.18.0.2"}}, "Ports": {}}]


def test_inspect_errors(cli, engine: FakeEngine) -> None:
    result = cli("inspect", "app")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: service 'app' is not running", "  Fix: run `montero up` first"]
    engine.set(container("redis"))
    result = cli("inspect", "web")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: no container for service 'web' (running services: redis)"]
    assert cli("inspect", "--network", "--env").exit_code == 2


DF = json.dumps({"Type": "Images", "TotalCount": "3", "Active": "1", "Size": "1.2GB", "Reclaimable": "800MB (66%)"})


def _df(docker: DockerCalls) -> None:
    rows = [{"Type": t, "TotalCount": "2", "Active": "1", "Size": "1.5GB", "Reclaimable": "1GB (66%)"}
            for t in ("Images", "Containers", "Local Volumes", "Build Cache")]
    docker.respond(lambda c: c[-3:] == ["df", "--format", "{{json .}}"] or "df" in c,
                   "\n".join(json.dumps(r) for r in rows))


def test_prune_refuses_without_yes_when_not_interactive(cli, docker: DockerCalls) -> None:
    _df(docker)
    result = cli("prune", "--all")
    assert result.exit_code == 2
    assert "Error: refusing to prune stopped containers, unused networks, all unused images, build cache " \
           "without confirmation" in result.stderr
    assert [c[1:3] for c in docker.calls] == [["system", "df"]]


def test_prune_yes(cli, docker: DockerCalls) -> None:
    _df(docker)
    result = cli("prune", "--all", "--volumes", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json_out(result)[0]["kind"] == "images"
    assert docker.calls[-1] == ["docker", "system", "prune", "--force", "--all", "--volumes"]


def test_version_json(cli, docker: DockerCalls) -> None:
    docker.respond(lambda c: c[-2:] == ["compose", "version"] or c[-1] == "version", "Docker Compose version v2.40.3")
    result = cli("version", "--json")
    assert result.exit_code == 0
    out = json_out(result)
    assert out["montero"] and out["compose"] == "v2.40.3"


def test_dev_follows_the_app_logs(cli, docker: DockerCalls, engine: FakeEngine, project: Path, tmp_path: Path,
                                  monkeypatch) -> None:
    import subprocess

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    engine.set(container("app"))
    followed: list[list[str]] = []

    class Done:
        def __init__(self, cmd: list[str]) -> None:
            followed.append(list(cmd))

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: Done(cmd))
    result = cli("dev")
    assert result.exit_code == 0, result.output
    [override] = list((tmp_path / "state" / "montero").glob("shop-*/compose.dev.yml"))
    assert followed == [compose_prefix(project, files=(override,)) + ["logs", "--follow", "--tail", "20", "app"]]
    assert "the stack keeps running in development mode" in result.stderr


def test_verbose_prints_the_docker_command(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    engine.set(container("app"))
    result = cli("--verbose", "exec", "app", "--", "id")
    assert result.exit_code == 0
    line = result.stderr.splitlines()[0]
    assert line.startswith("$ /") and line.endswith(" ".join(prefix[1:] + ["exec", "-T", "app", "id"]))
