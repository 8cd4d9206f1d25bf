"""How old the newest backup is, for Prometheus (the monitoring profile's `backup-exporter`).

It reads the backups folder (mounted read-only) on every scrape, so what Prometheus sees is what is
on disk now: a backup deleted by hand, a schedule that stopped, a folder nobody can read all show up.
A backup counts once its manifest.json is complete (montero writes the manifest last, after the
backup has been verified, and renames the folder from `.partial-…` only then). Safety backups taken
before a restore do not count: they are not the schedule's work.

Only the standard library: this runs in the monitoring image, which has Debian's python3 and no pip.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BACKUPS = Path(os.environ.get("BACKUPS_DIR", "/backups"))
REQUIRED = ("id", "created_at", "contents", "files")


def scan(folder: Path) -> dict[str, float]:
    newest = 0.0
    complete = partial = unreadable = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return {"readable": 0, "newest": 0, "complete": 0, "partial": 0, "unreadable": 0}
    for entry in entries:
        if not entry.is_dir():
            continue
        if entry.name.startswith(".partial-"):
            partial += 1
            continue
        if entry.name.startswith("."):
            continue
        try:
            manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
            if any(key not in manifest for key in REQUIRED):
                raise ValueError("incomplete manifest")
            created = datetime.fromisoformat(manifest["created_at"]).timestamp()
        except FileNotFoundError:
            continue  # a name claimed by a backup being finished
        except (OSError, ValueError, TypeError):
            unreadable += 1
            continue
        if manifest.get("label") == "safety":
            continue
        complete += 1
        newest = max(newest, created)
    return {"readable": 1, "newest": newest, "complete": complete, "partial": partial,
            "unreadable": unreadable}


def render(found: dict[str, float]) -> str:
    rows = [
        ("montero_backup_dir_readable", "gauge", "1 when the backups folder can be listed", found["readable"]),
        ("montero_backup_newest_timestamp_seconds", "gauge",
         "creation time of the newest complete backup (0: none)", found["newest"]),
        ("montero_backups", "gauge", "complete backups in the folder (safety backups not counted)",
         found["complete"]),
        ("montero_backup_partial_folders", "gauge", "interrupted backups left as .partial-* folders",
         found["partial"]),
        ("montero_backup_unreadable", "gauge", "backup folders whose manifest cannot be read",
         found["unreadable"]),
    ]
    out = []
    for name, kind, text, value in rows:
        # repr, not %g: a timestamp must keep every digit
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {float(value)!r}"]
    return "\n".join(out) + "\n"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = render(scan(BACKUPS)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per scrape every 5 s is noise


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9199
    ThreadingHTTPServer(("", port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
