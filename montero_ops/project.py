"""Where the stack is: found like `docker compose` finds its project.

`--project-dir` (env MONTERO_PROJECT_DIR), else the nearest parent folder holding
`docker/compose.yml`. Paths in the compose file are relative to the project root
(montero always passes `--project-directory ROOT`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from montero_ops.errors import ProjectNotFound

COMPOSE_RELPATH = Path("docker") / "compose.yml"


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    env_file: Path
    compose_files: tuple[Path, ...]
    profiles: tuple[str, ...] = field(default_factory=tuple)

    @property
    def compose_file(self) -> Path:
        return self.compose_files[0]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def backups_dir(self) -> Path:
        return Path(os.environ.get("MONTERO_BACKUP_DIR") or self.root / "backups")

    @property
    def env_example(self) -> Path:
        return self.root / ".env.example"

    def with_profiles(self, *profiles: str) -> Project:
        merged = tuple(dict.fromkeys(self.profiles + tuple(p for p in profiles if p)))
        return Project(self.root, self.name, self.env_file, self.compose_files, merged)

    def with_compose_files(self, *files: Path) -> Project:
        return Project(self.root, self.name, self.env_file, self.compose_files + tuple(files), self.profiles)


def normalize_name(raw: str) -> str:
    """Compose's rule: lowercase letters, digits, dashes and underscores, starting alphanumeric."""
    name = re.sub(r"[^a-z0-9_-]", "", raw.lower())
    name = name.lstrip("-_")
    return name or "montero"


def find_root(start: Path) -> Path | None:
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / COMPOSE_RELPATH).is_file():
            return folder
    return None


def find_project(
    project_dir: str | os.PathLike[str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    project_name: str | None = None,
    profiles: tuple[str, ...] = (),
) -> Project:
    if project_dir:
        root = Path(project_dir).expanduser().resolve()
        if not (root / COMPOSE_RELPATH).is_file():
            raise ProjectNotFound(
                f"no Montero stack in {root} (missing {COMPOSE_RELPATH})",
                hint="pass the folder that holds docker/compose.yml with --project-dir",
            )
    else:
        found = find_root(Path.cwd())
        if found is None:
            raise ProjectNotFound(
                f"no Montero stack found in {Path.cwd()} or any parent folder",
                hint="cd into the project, or pass --project-dir / set MONTERO_PROJECT_DIR",
            )
        root = found
    env = Path(env_file).expanduser() if env_file else root / ".env"
    if not env.is_absolute():
        env = (Path.cwd() / env).resolve()
    name = normalize_name(project_name or os.environ.get("COMPOSE_PROJECT_NAME") or root.name)
    return Project(root=root, name=name, env_file=env, compose_files=(root / COMPOSE_RELPATH,), profiles=profiles)


def default_app_image(project_name: str, tag: str = "latest") -> str:
    """The app image tag of a project when MONTERO_APP_IMAGE is not set: `<project>-app:<tag>`.

    Per project, so two stacks on one engine (`-p staging`, `-p prod`) never overwrite each
    other's image. docker/compose.yml spells the same default as
    `${COMPOSE_PROJECT_NAME}-app:latest` (compose's own `<project>-<service>` naming), so raw
    `docker compose -p NAME` agrees with montero. Releases reuse the repository part with
    their own tag. Keep this the only place montero names the default.
    """
    return f"{project_name}-app:{tag}"


def configured_app_image(project: Project) -> str:
    """The tag compose starts the app from: MONTERO_APP_IMAGE (environment, then .env), else the project default."""
    configured = os.environ.get("MONTERO_APP_IMAGE")
    if not configured and project.env_file.is_file():
        from montero_ops.services.envfile import parse_env  # the CLI's one .env parser

        configured = parse_env(project.env_file.read_text(encoding="utf-8", errors="replace")).get("MONTERO_APP_IMAGE")
    return configured or default_app_image(project.name)
