"""One .env parser (issue 13 point 2): services/envfile.parse_env reads a .env as compose does,
and the readers that used their own loop (backups' read_env_file, the app image tag) now agree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from montero_ops.project import Project, configured_app_image
from montero_ops.services.backups.sqlite_db import read_env_file
from montero_ops.services.envfile import parse_env

TRICKY = """\
# a comment
PLAIN=value
export EXPORTED=yes
INLINE=abc # a comment
HASH_NO_SPACE=abc#def
DQ="quoted # not a comment"
SQ='single # kept'
SPACED =  padded
EMPTY=
EQUALS=a=b=c
MONTERO_APP_IMAGE=shop-app:v2 # pinned
"""
EXPECTED = {"PLAIN": "value", "EXPORTED": "yes", "INLINE": "abc", "HASH_NO_SPACE": "abc#def",
            "DQ": "quoted # not a comment", "SQ": "single # kept", "SPACED": "padded", "EMPTY": "",
            "EQUALS": "a=b=c", "MONTERO_APP_IMAGE": "shop-app:v2"}


def _compose_reads(folder: Path) -> dict[str, str]:
    """What `docker compose config` makes of the same file (no engine needed)."""
    lines = ["services:", "  s:", "    image: busybox", "    environment:"]
    lines += [f'      {name}: "${{{name}}}"' for name in EXPECTED]
    (folder / "compose.yml").write_text("\n".join(lines) + "\n")
    done = subprocess.run(["docker", "compose", "--env-file", str(folder / ".env"), "-f", str(folder / "compose.yml"),
                           "-p", "envtest", "config", "--format", "json"], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"docker compose config is not usable here: {done.stderr.strip()[:200]}")
    environment: dict[str, str] = json.loads(done.stdout)["services"]["s"]["environment"]
    return environment


def test_parse_env_reads_what_compose_reads(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(TRICKY)
    assert parse_env(TRICKY) == EXPECTED
    if shutil.which("docker") is None:
        pytest.skip("no docker command: compose's own reading cannot be compared")
    assert _compose_reads(tmp_path) == EXPECTED


def test_every_reader_uses_the_one_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text(TRICKY)
    assert read_env_file(env) == EXPECTED  # inline comments and `export` as compose reads them
    assert read_env_file(tmp_path / "absent.env") == {}
    monkeypatch.delenv("MONTERO_APP_IMAGE", raising=False)
    project = Project(root=tmp_path, name="shop", env_file=env, compose_files=())
    assert configured_app_image(project) == "shop-app:v2"  # not "shop-app:v2 # pinned"
