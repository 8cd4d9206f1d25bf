"""Swarm secrets and configs (issue 21 point 7): secrets as files, names versioned by content, old ones pruned,
and docker/stack.yml hardened like compose.yml. The docker boundary is faked at python-on-whales' `run`."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from typer.testing import CliRunner

from montero_ops.cli import app
from montero_ops.errors import UsageError
from montero_ops.project import find_project
from montero_ops.services import swarm_objects as so
from montero_ops.services.deploy import override_file
from montero_ops.services.swarm import Placement

REPO = Path(__file__).resolve().parents[2]
KEY = "k3y-" + "0123456789abcdef" * 3
MAIL = "weak-mail-pw"
REDIS = "redis-" + "fedcba9876543210" * 2
STACK_RUN = "python_on_whales.components.stack.cli_wrapper.run"
UTILS_RUN = "montero_ops.services.dockercmd.run"


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "docker", tmp_path / "docker", ignore=shutil.ignore_patterns("certs"))
    (tmp_path / "backend" / "montero_api").mkdir(parents=True)
    shutil.copy(REPO / "backend" / "montero_api" / "settings.py", tmp_path / "backend" / "montero_api")
    (tmp_path / ".env").write_text(f"SECRET_KEY={KEY}\nMAIL_PASSWORD={MAIL}\nREDIS_PASSWORD={REDIS}\nTZ=UTC\n")
    for name in so.SECRET_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONTERO_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MONTERO_APP_IMAGE", "montero-app:9")
    return tmp_path


def _plan(project: Path, stack: str = "st") -> so.StackObjects:
    return so.plan(find_project(project), stack, [project / "docker" / "stack.yml"], environ={})


def test_every_name_carries_a_digest_and_only_changed_content_changes_it(project: Path) -> None:
    first = _plan(project)
    assert sorted(first.roles.values()) == ["MAIL_PASSWORD", "REDIS_PASSWORD", "SECRET_KEY"]
    assert sorted(first.configs) == ["montero_nginx", "nginx_common", "nginx_conf", "nginx_tls"]
    for name in first.names:
        assert name.startswith("st_") and len(name) <= 64
        assert so._VERSIONED.search(name), name
    assert _plan(project).names == first.names  # same content, same names: a redeploy changes nothing
    conf = project / "docker" / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text() + "\n# edited\n")
    second = _plan(project)
    assert second.configs["nginx_conf"][0] != first.configs["nginx_conf"][0]
    assert {k: v for k, v in second.configs.items() if k != "nginx_conf"} == \
        {k: v for k, v in first.configs.items() if k != "nginx_conf"}
    assert set(second.secrets) == set(first.secrets)
    (project / ".env").write_text(f"SECRET_KEY={KEY}\nMAIL_PASSWORD=another-one\n")
    third = _plan(project)
    assert sorted(third.roles.values()) == ["MAIL_PASSWORD", "SECRET_KEY"]  # no password: no Redis secret
    assert {n for n, r in third.roles.items() if r == "MAIL_PASSWORD"} != \
        {n for n, r in first.roles.items() if r == "MAIL_PASSWORD"}


def test_secret_names_do_not_reveal_a_plain_hash_of_the_value(project: Path) -> None:
    import hashlib

    objects = _plan(project)
    mail_name = next(n for n, r in objects.roles.items() if r == "MAIL_PASSWORD")
    for candidate in (MAIL.encode(), b"MAIL_PASSWORD\0" + MAIL.encode()):
        assert hashlib.sha256(candidate).hexdigest()[:so.DIGEST_LENGTH] not in mail_name


@pytest.mark.parametrize(("env", "message"), [
    ("TZ=UTC\n", "SECRET_KEY is not set in"),
    ("SECRET_KEY=change-me\n", "SECRET_KEY is a documented placeholder: the app refuses to start"),
])
def test_a_missing_or_weak_key_is_refused_before_anything_changes(project: Path, env: str, message: str) -> None:
    (project / ".env").write_text(env)
    with pytest.raises(UsageError, match=message):
        _plan(project)
    calls: list[list[str]] = []

    def run(cmd: list[Any], *args: Any, **kwargs: Any) -> str:
        calls.append([str(c) for c in cmd])
        if "info" in calls[-1]:
            return '{"Swarm": {"LocalNodeState": "active", "ControlAvailable": true}}'
        if calls[-1][1:4] == ["node", "list", "--quiet"]:
            return "n1"
        return '[{"ID": "n1"}]' if calls[-1][1:3] == ["node", "inspect"] else "[]"

    with mock.patch(UTILS_RUN, side_effect=run), mock.patch(STACK_RUN, return_value="") as stack_run, \
            mock.patch("montero_ops.state.State.client", lambda self, project=None, check=True: _client(project, self)):
        result = CliRunner().invoke(app, ["swarm", "deploy", "--stack", "st"])
    assert result.exit_code == 2, result.output
    assert message.split(":")[0] in result.output
    assert stack_run.call_count == 0


def _client(project: Any, state: Any) -> Any:
    from montero_ops.client import build_client

    return build_client(project or state.project(), client_call=["true"])


def test_the_layer_mounts_files_and_carries_no_value(project: Path, tmp_path: Path) -> None:
    objects = _plan(project)
    folder = tmp_path / "secrets"
    folder.mkdir()
    files = so.write_secret_files(objects, folder)
    for name, path in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == objects.secrets[name]
    layer = so.add_to_layer(override_file(Placement(), None, multi=False), objects, files)
    text = json.dumps(layer)
    assert KEY not in text and MAIL not in text and REDIS not in text
    app_spec, redis_spec = layer["services"]["app"], layer["services"]["redis"]
    assert app_spec["environment"] == {"SECRET_KEY_FILE": "/run/secrets/secret_key",
                                       "MAIL_PASSWORD_FILE": "/run/secrets/mail_password",
                                       "REDIS_PASSWORD_FILE": "/run/secrets/redis_password"}
    assert redis_spec["environment"] == {"REDIS_PASSWORD_FILE": "/run/secrets/redis_password"}
    assert {s["target"]: (s["uid"], s["mode"]) for s in app_spec["secrets"]} == {
        "secret_key": ("1000", 0o400), "mail_password": ("1000", 0o400), "redis_password": ("1000", 0o400)}
    assert [(s["target"], s["uid"]) for s in redis_spec["secrets"]] == [("redis_password", "0")]
    assert layer["configs"]["nginx_conf"] == {"name": objects.configs["nginx_conf"][0],
                                              "file": str((project / "docker" / "nginx" / "nginx.conf").resolve())}
    assert layer["secrets"] == {n: {"name": n, "file": str(files[n])} for n in objects.secrets}


def _service(name: str, secrets: list[str], configs: list[str], previous: tuple[list[str], list[str]] | None = None
             ) -> dict[str, Any]:
    def spec(s: list[str], c: list[str]) -> dict[str, Any]:
        return {"Name": name, "TaskTemplate": {"ContainerSpec": {
            "Secrets": [{"SecretName": x} for x in s], "Configs": [{"ConfigName": x} for x in c]}}}

    out: dict[str, Any] = {"Spec": spec(secrets, configs)}
    if previous:
        out["PreviousSpec"] = spec(*previous)
    return out


def test_stale_keeps_what_a_spec_or_its_rollback_uses() -> None:
    services = [_service("st_app", ["st_secret_key_aaaaaaaaaaaa"], [], (["st_secret_key_bbbbbbbbbbbb"], [])),
                _service("st_nginx", [], ["st_nginx_conf_cccccccccccc"])]
    existing = ["st_secret_key_aaaaaaaaaaaa", "st_secret_key_bbbbbbbbbbbb", "st_secret_key_dddddddddddd",
                "st_nginx_conf_cccccccccccc", "st_nginx_conf_eeeeeeeeeeee", "st_nginx_conf", "other_x_ffffffffffff",
                "st_tls_privkey_0123456789ab"]
    assert so.stale("st", existing, services) == ["st_nginx_conf_eeeeeeeeeeee", "st_secret_key_dddddddddddd",
                                                  "st_tls_privkey_0123456789ab"]


def test_prune_removes_the_stale_and_tolerates_one_still_in_use() -> None:
    from python_on_whales.exceptions import DockerException

    from montero_ops.client import plain_client

    calls: list[list[str]] = []
    names = {"s1": "st_secret_key_aaaaaaaaaaaa", "s2": "st_secret_key_dddddddddddd", "c1": "st_nginx_conf_eeeeeeeeeeee"}

    def run(cmd: list[Any], *args: Any, **kwargs: Any) -> str:
        cmd = ["docker", *(str(c) for c in cmd[1:])]
        calls.append(cmd)
        if cmd[1:4] == ["secret", "list", "--quiet"]:
            return "s1\ns2\n"
        if cmd[1:4] == ["config", "list", "--quiet"]:
            return "c1\n"
        if cmd[2:3] == ["inspect"] and cmd[1] in ("secret", "config"):
            return json.dumps([{"ID": cmd[3], "Spec": {"Name": names[cmd[3]]}}])
        if cmd[1:3] == ["config", "rm"]:
            raise DockerException(cmd, 1, stderr=b"config is in use by the following service: st_nginx")
        return ""

    client = plain_client()
    services = [_service("st_app", ["st_secret_key_aaaaaaaaaaaa"], [])]
    with mock.patch(UTILS_RUN, side_effect=run), \
            mock.patch("montero_ops.services.dockercmd.docker_cmd", return_value=["docker"]):
        removed = so.prune(client, "st", services)
    assert removed == ["st_secret_key_dddddddddddd"]
    assert ["docker", "secret", "list", "--quiet", "--filter", "label=com.docker.stack.namespace=st"] in calls
    assert ["docker", "secret", "rm", "st_secret_key_dddddddddddd"] in calls
    assert ["docker", "secret", "rm", "st_secret_key_aaaaaaaaaaaa"] not in calls


def test_swarm_deploy_passes_the_layer_and_prunes_after(project: Path) -> None:
    from test_deploy import fake_docker

    calls: list[list[str]] = []
    seen: dict[str, Any] = {}

    def stack_deploy(cmd: list[Any], *args: Any, **kwargs: Any) -> str:
        files = [Path(str(cmd[i + 1])) for i, c in enumerate(cmd) if str(c) == "--compose-file"]
        seen["layer"] = json.loads(files[-1].read_text())
        seen["files"] = {p.name: p.read_text() for p in files[-1].parent.iterdir()}
        seen["env"] = kwargs.get("env") or {}
        return ""

    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls)), mock.patch(STACK_RUN, side_effect=stack_deploy), \
            mock.patch("montero_ops.state.State.client", lambda self, project=None, check=True: _client(project, self)):
        result = CliRunner().invoke(app, ["swarm", "deploy", "--stack", "st"])
    assert result.exit_code == 0, result.output
    layer = seen["layer"]
    assert layer["version"] == yaml.safe_load((project / "docker" / "stack.yml").read_text())["version"]
    assert json.dumps(layer).count(KEY) == 0 and MAIL not in json.dumps(layer)
    assert sorted(layer["configs"]) == ["montero_nginx", "nginx_common", "nginx_conf", "nginx_tls"]
    assert sorted(v for k, v in seen["files"].items() if k.startswith("st_secret_key_")) == [KEY]
    assert "settings as swarm secrets: MAIL_PASSWORD, REDIS_PASSWORD, SECRET_KEY" in result.output
    assert KEY not in result.output and MAIL not in result.output and REDIS not in result.output
    ls = [c for c in calls if c[1:3] in (["secret", "list"], ["config", "list"])]
    assert len(ls) == 2  # pruned after the deploy converged


def test_stack_file_has_no_secret_in_any_environment_and_every_service_is_hardened() -> None:
    stack = yaml.safe_load((REPO / "docker" / "stack.yml").read_text())
    for name, service in stack["services"].items():
        env = service.get("environment") or {}
        assert not set(env) & set(so.SECRET_SETTINGS), (name, env)
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        limits = service["deploy"]["resources"]["limits"]
        assert {"cpus", "memory", "pids"} <= set(limits), (name, limits)
        assert "security_opt" not in service, f"{name}: docker stack deploy drops security_opt"
        # `docker stack deploy` ignores the `tmpfs:` key (so the stack's /tmp had never been a tmpfs)
        assert "tmpfs" not in service, f"{name}: use a volume of type tmpfs"
        assert {"type": "tmpfs", "target": "/tmp"} in service["volumes"], name
    nginx_tmpfs = {v["target"] for v in stack["services"]["nginx"]["volumes"] if v.get("type") == "tmpfs"}
    assert nginx_tmpfs >= {"/tmp", "/run", "/var/cache/nginx", "/var/lib/nginx", "/var/log/nginx"}
    postgres = yaml.safe_load((REPO / "docker" / "stack.postgres.yml").read_text())
    assert postgres["version"] == stack["version"]  # docker refuses files of different versions


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (no daemon) for `docker stack config`")
def test_docker_renders_the_stack_with_the_layer(project: Path, tmp_path: Path) -> None:
    """The docker CLI itself merges stack.yml and montero's layer: names versioned, values nowhere."""
    objects = _plan(project)
    folder = tmp_path / "s"
    folder.mkdir()
    layer = so.add_to_layer(override_file(Placement(), None, multi=False), objects, so.write_secret_files(objects, folder))
    layer["version"] = so.compose_version(project / "docker" / "stack.yml")
    (folder / "layer.yml").write_text(json.dumps(layer))
    docker = shutil.which("docker") or "docker"
    if "config" not in subprocess.run([docker, "stack", "--help"], capture_output=True, text=True, timeout=30,
                                      check=False).stdout:
        pytest.skip(f"{docker} has no `docker stack config` (docker CLI 20.10 or older)")
    done = subprocess.run([docker, "stack", "config", "-c", str(project / "docker" / "stack.yml"),
                           "-c", str(folder / "layer.yml")], capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin", "MONTERO_APP_IMAGE": "montero-app:9",
                               "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    assert KEY not in done.stdout and MAIL not in done.stdout and REDIS not in done.stdout
    assert rendered["configs"]["nginx_conf"]["name"] == objects.configs["nginx_conf"][0]
    app_env = rendered["services"]["app"]["environment"]
    assert app_env["SECRET_KEY_FILE"] == "/run/secrets/secret_key" and "SECRET_KEY" not in app_env
    assert app_env["TZ"]  # the stack's own clear settings survive the merge
    assert {s["source"] for s in rendered["services"]["app"]["secrets"]} == set(objects.secrets)
    assert rendered["services"]["nginx"]["read_only"] is True
