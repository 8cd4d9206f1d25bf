"""The stack itself under a real engine, driven by plain `docker compose` (not montero):
the image builds, the stack becomes healthy, /health answers on the published port, the
container runs as uid 1000 and the image holds no .env; in production nginx fronts the
app, which then publishes no port."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest


def _up(project, *args: str) -> None:
    done = project.compose("up", "-d", "--wait", "--wait-timeout", "240", *args, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"compose up failed:\n{done.stderr[-2000:]}\n--- logs ---\n{project.logs()}", pytrace=False)


def test_compose_config_accepts_every_file(stack_project) -> None:
    production = stack_project.root / "docker" / "compose.production.yml"
    done = stack_project.compose("-f", str(production), "--profile", "production", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert set(config["services"]) == {"app", "redis", "nginx"}
    assert not config["services"]["app"].get("ports"), "production must not publish the app's port"
    assert [p["target"] for p in config["services"]["nginx"]["ports"]] == [80, 443]


def test_stack_serves_health_as_uid_1000(stack_project) -> None:
    stack_project.write_env(SECRET_KEY=secrets.token_hex(32))
    _up(stack_project)

    status, body = stack_project.wait_http("/health", timeout=60)
    assert status == 200, body
    health = json.loads(body)
    assert health["status"] == "ok", health
    assert health["redis"]["status"] == "ok", health

    uid = stack_project.compose("exec", "-T", "app", "id", "-u")
    assert uid.stdout.strip() == "1000", uid.stderr
    # The data written by the app is on the host's bind mount.
    assert (stack_project.root / "data" / "mi_sistema.db").is_file()


def test_image_holds_no_env_file_nor_tests(stack_env, app_image) -> None:
    # The session built the image from the checkout, which has a .env after setup.
    # Tool caches and pip stay out too (docs/benchmarks.md, figure 6: image size).
    listing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", app_image, "-c",
         ("find / -xdev \\( -name '.env' -o -name '.env.*' -o -name '.git' \\) -print 2>/dev/null;"
          " find /app -name tests -print; ls /app;"
          " echo ---; find /app /opt/venv \\( -name '.*_cache' -o -name pip -o -name setuptools \\) -print")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert listing.returncode == 0, listing.stderr
    files, _, unneeded = listing.stdout.partition("---")
    assert unneeded.split() == [], "tool caches or pip/setuptools in the app image"
    lines = files.split()
    assert not [ln for ln in lines if ln.startswith("/") and "/opt/venv/" not in ln], listing.stdout
    assert "wsgi.py" in lines and "alembic.ini" in lines
    user = subprocess.run(["docker", "image", "inspect", "--format", "{{.Config.User}}", app_image],
                          capture_output=True, text=True, timeout=60, check=False)
    assert user.stdout.strip() == "appuser"


def test_production_profile_puts_nginx_in_front(stack_project) -> None:
    stack_project.compose_files.append(stack_project.root / "docker" / "compose.production.yml")
    stack_project.profiles.append("production")
    stack_project.write_env(SECRET_KEY=secrets.token_hex(32))
    _up(stack_project)

    status, body = stack_project.wait_http("/health", service="nginx", timeout=60)
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"
    status, body, _ = stack_project.get("/static/robots.txt", service="nginx")
    assert status == 200 and "User-agent" in body
    ports = stack_project.compose("ps", "--format", "json", "app")
    assert ports.returncode == 0, ports.stderr
    published = [p for line in ports.stdout.splitlines() if line.strip()
                 for p in (json.loads(line).get("Publishers") or []) if p.get("PublishedPort")]
    assert published == [], f"the app publishes {published} in production"
