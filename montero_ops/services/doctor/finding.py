"""What one doctor check reports: a Finding (id, status, message, fix) and its optional repair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


SYMBOLS = {Status.PASS: "✔", Status.WARN: "!", Status.FAIL: "✘", Status.SKIP: "-"}


@dataclass
class Repair:
    """A fix doctor can apply itself. `safe` ones (reversible) run under --fix without asking."""

    description: str
    apply: Callable[[], str]
    safe: bool = False


@dataclass
class Finding:
    id: str
    status: Status
    message: str
    fix: str = ""
    detail: list[str] = field(default_factory=list)
    repair: Repair | None = None

    def to_dict(self) -> dict[str, Any]:
        # The stable JSON shape: {id, status, message, fix} (+ detail lines, possibly empty).
        return {
            "id": self.id,
            "status": self.status.value,
            "message": self.message,
            "fix": self.fix,
            "detail": list(self.detail),
        }


def passed(id: str, message: str) -> Finding:
    return Finding(id, Status.PASS, message)


def warned(id: str, message: str, fix: str = "", **kw: Any) -> Finding:
    return Finding(id, Status.WARN, message, fix, **kw)


def failed(id: str, message: str, fix: str = "", **kw: Any) -> Finding:
    return Finding(id, Status.FAIL, message, fix, **kw)


def skipped(id: str, message: str) -> Finding:
    return Finding(id, Status.SKIP, message)


@dataclass
class Report:
    findings: list[Finding]

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status is status)

    @property
    def ok(self) -> bool:
        return self.count(Status.FAIL) == 0

    def summary(self) -> str:
        return (
            f"{self.count(Status.PASS)} passed, {self.count(Status.WARN)} warnings, "
            f"{self.count(Status.FAIL)} failed, {self.count(Status.SKIP)} skipped"
        )

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.findings]
