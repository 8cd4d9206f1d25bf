"""Issue 22 point 6: doctor is not weaker than the check that gates backups.

A damaged index passes PRAGMA quick_check but fails integrity_check (the issue's "row N missing
from index ix_clients_name"): doctor runs integrity_check, bounded in time, and says so when
only quick_check ran.
"""

from __future__ import annotations

from pathlib import Path

from doctor_helpers import make_ctx

from montero_ops.services.doctor.data import check_database
from tests.unit.test_backup_support import damaged_index


def test_a_damaged_index_fails_doctor(root: Path) -> None:
    damaged_index(root / "data" / "mi_sistema.db")
    found = {f.id: f for f in check_database(make_ctx(root))}
    integrity = found["data.integrity"]
    assert integrity.status.value == "fail"
    assert integrity.message == ("mi_sistema.db fails PRAGMA integrity_check: row 1 missing from index "
                                 "ix_clients_name; row 2 missing from index ix_clients_name; row 3 missing from "
                                 "index ix_clients_name")
    assert integrity.fix.startswith("montero restore sqlite --latest")


def test_past_its_time_bound_doctor_says_only_quick_check_ran(root: Path) -> None:
    damaged_index(root / "data" / "mi_sistema.db", rows=20000)
    ctx = make_ctx(root)
    ctx.timeout = 1e-6  # integrity_check cannot finish: quick_check runs instead, and the line says so
    integrity = {f.id: f for f in check_database(ctx)}["data.integrity"]
    assert integrity.status.value == "pass"
    assert integrity.message == ("mi_sistema.db passes PRAGMA quick_check (integrity_check did not finish within "
                                 "0.0 s); the full check runs in `montero backups verify` and every backup")
