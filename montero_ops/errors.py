"""Domain errors: each carries a message, a hint (the fix) and a documented exit code.

Exit codes (the same table is in the README and docs/cli.md; tests/unit/test_exit_codes.py
compares the three with ExitCode):
  0    ok
  1    failed, or a confirmation answered "no" (nothing was changed)
  2    usage / bad input (nothing was changed)
  3    Docker or Compose unavailable
  4    project not found
  5    a required external tool is missing (`montero scan`: Trivy)
  6    another montero command holds the project lock (nothing was changed)
  130  interrupted
The CLI turns these, and python-on-whales' DockerException, into one red line on stderr.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from montero_ops.services.stack import FailureReport


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    DECLINED = 1  # a confirmation answered "no": nothing was changed (every command alike)
    USAGE = 2
    DOCKER_UNAVAILABLE = 3
    PROJECT_NOT_FOUND = 4
    TOOL_MISSING = 5  # a required external tool (Trivy for `montero scan`) is not installed
    BUSY = 6  # another state-changing montero command holds the project lock
    INTERRUPTED = 130


class MonteroError(Exception):
    """Base of every error montero reports to a user."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(MonteroError):
    """Bad input from the user: nothing was changed."""

    exit_code = ExitCode.USAGE


class DockerUnavailable(MonteroError):
    """The Docker daemon, the docker client or the Compose v2 plugin is missing."""

    exit_code = ExitCode.DOCKER_UNAVAILABLE


class EngineError(MonteroError):
    """The Docker Engine answered, with an error status (no such container or image, a conflict…).

    Not a daemon problem, so not exit 3: `status` lets callers tell a 404 from a 409 or a 500.
    """

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(f"Docker Engine API error {status}: {message}", hint=hint)
        self.status = status
        self.detail = message


class ProjectNotFound(MonteroError):
    exit_code = ExitCode.PROJECT_NOT_FOUND


class ProjectBusy(MonteroError):
    """Another state-changing montero command holds the project lock: nothing was changed."""

    exit_code = ExitCode.BUSY


class StackNotRunning(MonteroError):
    """An action needs running containers and there are none."""

    def __init__(self, service: str | None = None) -> None:
        what = f"service '{service}' is not running" if service else "the stack is not running"
        super().__init__(what, hint="run `montero up` first")


class CommandFailed(MonteroError):
    """A docker/compose (or in-container) command failed; message is its meaningful line."""


class ToolMissing(MonteroError):
    """An external tool a command needs (Trivy for `montero scan`) is not installed."""

    exit_code = ExitCode.TOOL_MISSING


class StackUnhealthy(CommandFailed):
    """A service failed to become healthy; `report` holds the evidence `up` prints."""

    def __init__(self, report: FailureReport) -> None:
        cause = report.cause
        super().__init__(
            f"service '{report.service}' {report.reason}" + (f": {cause}" if cause else ""),
            hint=f"see the logs above; `montero logs {report.service}` shows more",
        )
        self.report = report


def docker_error_line(exc: Any) -> str:
    """Shorten a python-on-whales DockerException to the line that says what went wrong.

    `str(exc)` is many lines (the whole command and all its output); users need the
    last meaningful stderr line, e.g. 'service "app" is not running'.
    """
    for stream in (getattr(exc, "stderr", None), getattr(exc, "stdout", None)):
        if not stream:
            continue
        lines = [ln.strip() for ln in str(stream).splitlines() if ln.strip()]
        # Prefer lines that look like errors; fall back to the last line.
        for line in reversed(lines):
            low = line.lower()
            if "error" in low or "failed" in low or "not " in low or "no such" in low:
                return _strip_prefix(line)
        if lines:
            return _strip_prefix(lines[-1])
    code = getattr(exc, "return_code", None)
    cmd = getattr(exc, "docker_command", None)
    shown = " ".join(cmd[:3]) if isinstance(cmd, list) else "docker"
    return f"`{shown} …` failed with exit code {code}"


def _strip_prefix(line: str) -> str:
    for prefix in ("Error response from daemon: ", "Error: ", "error: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line
