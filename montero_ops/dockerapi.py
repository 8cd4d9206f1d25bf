"""The Docker Engine API through the Docker SDK for Python (`docker`), outside the fast path.

Every read or probe that is not `ps`/`health` goes through here: exec probes with exit
codes, log tails, `system df`, `info`, `version`, image inspect, volumes. The SDK does
the transport, the chunk decoding and the stream demultiplexing that engine.py once did
by hand. Its import (~0.1-0.2 s) is paid only by the commands that use it; `ps` and
`health` keep their few GET requests in engine.py.

Answers are the Engine API's own documents (dicts), the same shapes engine.py returns,
so a caller can take either (`engine.ContainerReader`). Errors are montero's: an engine
that does not answer is DockerUnavailable (exit 3, with the fix), an error status is
EngineError with that status.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from montero_ops.engine import API_VERSION, DEFAULT_SOCKET, socket_path
from montero_ops.errors import DockerUnavailable, EngineError

if TYPE_CHECKING:
    # Typed with types-docker (the dev extra); without it mypy, run from the repository root,
    # takes ./docker (the compose files) for a namespace package: hence the ignores.
    from docker.client import DockerClient as SDKClient  # type: ignore[import-not-found,unused-ignore]

PROJECT_LABEL = "com.docker.compose.project"


def _unavailable(exc: BaseException, where: str) -> DockerUnavailable:
    """The SDK's connection failure as the same three answers engine.py gives."""
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, FileNotFoundError):
            return DockerUnavailable(
                f"the Docker socket {where} does not exist: the daemon is not running",
                hint="start Docker (`sudo systemctl start docker`) or run `montero setup`",
            )
        if isinstance(cause, PermissionError):
            return DockerUnavailable(
                f"permission denied on the Docker socket {where}",
                hint="add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again)",
            )
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return DockerUnavailable(
        f"the Docker daemon is not answering on {where}",
        hint="start or restart Docker (`sudo systemctl restart docker`) or run `montero setup`",
    )


class DockerAPI:
    """One docker SDK client for a montero command, with the read/probe calls montero makes.

    `sdk` is the docker SDK's DockerClient itself, for code that wants its typed objects.
    """

    def __init__(self, path: str | None = None, timeout: float = 10.0, sdk: SDKClient | None = None) -> None:
        self.path = path or socket_path()
        self.where = self.path or os.environ.get("DOCKER_HOST", DEFAULT_SOCKET)
        self.timeout = timeout
        self._sdk = sdk

    @property
    def sdk(self) -> SDKClient:
        if self._sdk is None:
            from docker.client import DockerClient as SDKClient  # type: ignore[import-not-found,unused-ignore]
            from docker.client import from_env  # type: ignore[import-not-found,unused-ignore]

            # A fixed API version: no /version round trip before the first request.
            version, timeout = API_VERSION.lstrip("v"), max(1, round(self.timeout))
            if self.path:
                self._sdk = SDKClient(base_url=f"unix://{self.path}", version=version, timeout=timeout)
            else:  # DOCKER_HOST is tcp:// or ssh://: the SDK reads it with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
                self._sdk = from_env(version=version, timeout=timeout, use_ssh_client=True)
        return self._sdk

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one SDK call; its failures become montero's errors."""
        from docker.errors import APIError, DockerException  # type: ignore[import-not-found,unused-ignore]

        try:
            return func(*args, **kwargs)
        except APIError as exc:
            status = exc.status_code or 500
            raise EngineError(status, str(exc.explanation or exc)) from exc
        except (DockerException, OSError) as exc:  # requests' errors are OSErrors
            raise _unavailable(exc, self.where) from exc

    def ping(self) -> None:
        """Raise DockerUnavailable (exit 3, with the fix) unless the daemon answers."""
        self._call(lambda: self.sdk.ping())

    def project_containers(self, project: str, all: bool = True) -> list[dict[str, Any]]:
        """Containers of one compose project (list form: Id, Names, State, Status, Labels …)."""
        found = self._call(lambda: self.sdk.containers.list(
            all=all, sparse=True, filters={"label": [f"{PROJECT_LABEL}={project}"]}))
        return [dict(c.attrs) for c in found]

    def containers(self, all: bool = True) -> list[dict[str, Any]]:
        found = self._call(lambda: self.sdk.containers.list(all=all, sparse=True))
        return [dict(c.attrs) for c in found]

    def project_volumes(self, project: str) -> list[str]:
        """Names of the volumes compose created for one project."""
        found = self._call(lambda: self.sdk.volumes.list(filters={"label": f"{PROJECT_LABEL}={project}"}))
        return sorted(str(v.name) for v in found)

    def inspect(self, container_id: str) -> dict[str, Any]:
        return dict(self._call(lambda: self.sdk.containers.get(container_id).attrs))

    def version(self) -> dict[str, Any]:
        return dict(self._call(lambda: self.sdk.version()))

    def info(self) -> dict[str, Any]:
        return dict(self._call(lambda: self.sdk.info()))

    def system_df(self) -> dict[str, Any]:
        return dict(self._call(lambda: self.sdk.df()))

    def image_inspect(self, name: str) -> dict[str, Any] | None:
        """The image's inspect document, or None when no such image exists."""
        try:
            return dict(self._call(lambda: self.sdk.images.get(name).attrs))
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise

    def logs_tail(self, container_id: str, lines: int = 50) -> str:
        """The last `lines` lines of a container's stdout+stderr, as text."""
        raw = self._call(lambda: self.sdk.api.logs(container_id, stdout=True, stderr=True, tail=lines))
        return bytes(raw).decode(errors="replace")

    def exec_run(self, container_id: str, cmd: list[str], user: str | None = None) -> tuple[int, str]:
        """Run a short probe command in a running container: (exit code, stdout+stderr)."""
        def run() -> tuple[int, str]:
            api = self.sdk.api
            created = api.exec_create(container_id, cmd, stdout=True, stderr=True, user=user or "")
            output = api.exec_start(created["Id"], tty=False)
            code = api.exec_inspect(created["Id"]).get("ExitCode")
            return (code if isinstance(code, int) else -1), bytes(output).decode(errors="replace")

        result: tuple[int, str] = self._call(run)
        return result

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
