"""`montero update` (issue 14 point 8): the base image refreshed the way this host can, Trivy as a
gate before any replica changes. The docker and Trivy calls are faked at the boundary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from montero_ops.errors import CommandFailed, MonteroError
from montero_ops.project import Project
from montero_ops.services import scan as scanning
from montero_ops.services import update as upd


@pytest.fixture()
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("MONTERO_PYTHON_IMAGE", raising=False)
    return Project(tmp_path, "shop", tmp_path / ".env", (tmp_path / "docker" / "compose.yml",))


def done(code: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["docker", "pull"], code, "", stderr)


def test_a_registry_base_is_pulled_again(shop: Project) -> None:
    pulled: list[str] = []
    line = upd.refresh_base(shop, pull=lambda image: (pulled.append(image), done(0))[1],
                            bootstrap=lambda p, image: pytest.fail("no bootstrap with a registry base"))
    assert pulled == ["python:3.11-slim"] and line == "base image python:3.11-slim pulled again"


def test_the_local_debian_base_is_rebuilt_not_pulled(shop: Project) -> None:
    (shop.root / ".env").write_text("MONTERO_PYTHON_IMAGE=montero-base:shop\n")
    built: list[tuple[Path, str]] = []
    line = upd.refresh_base(shop, pull=lambda image: pytest.fail("no pull without a registry"),
                            bootstrap=lambda p, image: built.append((p.root, image)))
    # The project's own tag, not the script's default montero-base:<codename>.
    assert built == [(shop.root, "montero-base:shop")] and "rebuilt from the current Debian packages" in line


def test_the_bootstrap_script_is_told_which_tag_to_build(shop: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from montero_ops.services import setup

    ran: list[tuple[list[str], dict[str, str] | None]] = []
    monkeypatch.setattr(setup, "run_script", lambda script, args, env_extra=None: ran.append((args, env_extra)))
    upd._bootstrap(shop, "montero-base:shop")
    assert ran == [(["--force"], {"MONTERO_BASE_IMAGE": "montero-base:shop"})]


def test_an_unreachable_registry_is_one_line_with_the_way_out(shop: Project) -> None:
    with pytest.raises(MonteroError) as failed:
        upd.refresh_base(shop, pull=lambda image: done(1, "Error response from daemon: Get \"https://registry-1"
                                                            ".docker.io/v2/\": dial tcp: lookup failed"))
    assert failed.value.message.startswith("cannot refresh the base image python:3.11-slim: Error response")
    assert "montero images bootstrap" in (failed.value.hint or "")


def test_a_finding_stops_the_update_unless_allowed() -> None:
    def vulnerable(tag: str, **kw: object) -> list[str]:
        raise CommandFailed(f"Trivy found HIGH,CRITICAL vulnerabilities in {tag}")

    with pytest.raises(upd.Vulnerable, match="the update stopped before any replica changed"):
        upd.scan_release("shop-app:r-1", False, [], scan=vulnerable)
    notes: list[str] = []
    upd.scan_release("shop-app:r-1", True, notes, scan=vulnerable)
    assert notes == ["Trivy found HIGH,CRITICAL vulnerabilities in shop-app:r-1: deployed anyway (--allow-vulnerable)"]


def test_without_trivy_the_release_goes_unscanned_and_says_so() -> None:
    def missing(tag: str, **kw: object) -> list[str]:
        raise scanning.ToolMissing("Trivy is not installed: nothing was scanned")

    notes: list[str] = []
    upd.scan_release("shop-app:r-1", False, notes, scan=missing)
    assert notes == ["Trivy is not installed: the new release was not scanned (`montero scan` says how to add it)"]


def test_a_clean_scan_is_noted() -> None:
    notes: list[str] = []
    upd.scan_release("shop-app:r-1", False, notes, scan=lambda tag, **kw: [])
    assert notes == ["Trivy found no HIGH or CRITICAL vulnerability in shop-app:r-1"]
