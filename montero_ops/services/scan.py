"""Vulnerability scan of the app image with Trivy, when it is installed.

Trivy is optional: montero never installs it. Without it `montero scan` exits with
code 5 (an optional tool is missing) and says how to install it.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from montero_ops.errors import CommandFailed, ToolMissing, UsageError
from montero_ops.project import Project, configured_app_image

SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
INSTALL_HINT = (
    "install Trivy (https://trivy.dev/latest/getting-started/installation/), e.g. "
    "`curl -sfL https://raw.githubusercontent.com/aquasecurity/trivy/main/contrib/install.sh "
    "| sh -s -- -b /usr/local/bin`, or on Debian/Ubuntu Aqua's apt repository; then run `montero scan` again"
)


def app_image(project: Project, compose_config: dict[str, Any] | None = None) -> str:
    """The image compose names for `app` (MONTERO_APP_IMAGE honoured through the compose file)."""
    if compose_config:
        image = compose_config.get("services", {}).get("app", {}).get("image")
        if image:
            return str(image)
    return configured_app_image(project)


def severity_list(raw: str) -> str:
    items = [s.strip().upper() for s in raw.split(",") if s.strip()]
    bad = [s for s in items if s not in SEVERITIES]
    if not items or bad:
        raise UsageError(f"unknown severity {', '.join(bad) or repr(raw)}", hint=f"use a comma list of {', '.join(SEVERITIES)}")
    return ",".join(items)


def trivy_command(image: str, severity: str, fail: bool, json_output: bool, trivy: str = "trivy") -> list[str]:
    cmd = [trivy, "image", "--severity", severity, "--exit-code", "1" if fail else "0", "--no-progress"]
    if json_output:
        cmd += ["--format", "json"]
    return [*cmd, image]


def scan(image: str, severity: str = "HIGH,CRITICAL", fail: bool = True, json_output: bool = False) -> list[str]:
    """Run Trivy with its report on stdout. Exit 1 (CommandFailed) when it finds what --severity names."""
    severity = severity_list(severity)
    trivy = shutil.which("trivy")
    if trivy is None:
        raise ToolMissing("Trivy is not installed: nothing was scanned", hint=INSTALL_HINT)
    cmd = trivy_command(image, severity, fail, json_output, trivy)
    proc = subprocess.run(cmd, check=False)
    if proc.returncode == 1 and fail:
        raise CommandFailed(f"Trivy found {severity} vulnerabilities in {image}",
                            hint="rebuild on a patched base image (`montero build --no-cache`) or pin fixed versions")
    if proc.returncode != 0:
        raise CommandFailed(f"Trivy failed with exit code {proc.returncode} on {image}",
                            hint="is the image built? `montero build`")
    return cmd
