"""Backups that lose nothing: SQLite and Redis snapshots, verification, retention, restore.

Modules: manifest (the folder and its manifest.json), sqlite_db and redis_data (the two
stores), stack (the compose stack as backups need it), create, verify, prune, restore.
"""

from montero_ops.services.backups.create import create_backup
from montero_ops.services.backups.manifest import BackupRef, Manifest, find_backup, list_backups
from montero_ops.services.backups.prune import apply_prune, plan_prune
from montero_ops.services.backups.restore import plan_restore, run_restore
from montero_ops.services.backups.verify import check_backup, verify_backup

__all__ = [
    "BackupRef", "Manifest", "apply_prune", "check_backup", "create_backup", "find_backup", "list_backups",
    "plan_prune", "plan_restore", "run_restore", "verify_backup",
]
