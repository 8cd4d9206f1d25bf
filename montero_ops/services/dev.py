"""Hot-reload development mode, layered on compose.yml without editing it.

A generated override bind-mounts backend/ over /app and runs `flask run --reload`.
It lives in montero's state folder (never in docker/), one per project.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from montero_ops.project import Project
from montero_ops.services.containers import APP_DIR, APP_SERVICE

FLASK_CMD = ["flask", "--app", "wsgi", "run", "--reload", "--host", "0.0.0.0", "--port", "5000"]


def state_dir(project: Project) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(project.root).encode()).hexdigest()[:10]
    return base / "montero" / f"{project.name}-{digest}"


def override(project: Project) -> dict[str, Any]:
    return {
        "services": {
            APP_SERVICE: {
                "command": FLASK_CMD,
                "environment": {"FLASK_ENV": "development", "FLASK_DEBUG": "1", "MONTERO_ENV": "development"},
                "volumes": [
                    {"type": "bind", "source": str(project.root / "backend"), "target": APP_DIR},
                ],
            }
        }
    }


def write_override(project: Project) -> Path:
    """JSON is valid YAML, so compose reads it and no YAML library is needed."""
    path = state_dir(project) / "compose.dev.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(override(project), indent=2) + "\n")
    return path
