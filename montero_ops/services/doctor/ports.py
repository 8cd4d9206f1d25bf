"""Check 3: the host ports the stack publishes, and who holds them when taken.

Docker 20.10 gives a published range's first port to the first app container and fails
(`bind: address already in use`) when another process holds it, so the first port of
MONTERO_APP_PORTS must be free (or ours); a foreign holder elsewhere in the range only
limits scaling. Holders are found without root tools: /proc/net/tcp{,6} gives the
listening socket's inode, /proc/<pid>/fd links give the process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montero_ops.services.doctor.context import (
    DEFAULT_APP_PORTS,
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    Context,
)
from montero_ops.services.doctor.finding import Finding, failed, passed, warned

PROC = Path("/proc")
LISTEN = "0A"


@dataclass(frozen=True)
class Holder:
    port: int
    pid: int | None = None
    program: str = ""
    container: str = ""
    project: str = ""

    def describe(self) -> str:
        if self.container:
            owner = f" of project {self.project}" if self.project else ""
            return f"container {self.container}{owner}"
        if self.pid:
            return f"process {self.pid} ({self.program})"
        return "a process doctor cannot see (another user or namespace)"


def parse_ports(spec: str) -> list[int]:
    """'5000-5009' -> [5000..5009]; '8080' -> [8080]; an IP prefix ('127.0.0.1:80') is ignored."""
    spec = spec.strip().rsplit(":", 1)[-1]
    if "-" in spec:
        low, high = spec.split("-", 1)
        return list(range(int(low), int(high) + 1))
    return [int(spec)]


def listening_inodes(proc: Path = PROC) -> dict[int, set[str]]:
    """TCP ports in LISTEN state -> socket inodes, from /proc/net/tcp and tcp6."""
    found: dict[int, set[str]] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != LISTEN:
                continue
            port = int(parts[1].rsplit(":", 1)[1], 16)
            found.setdefault(port, set()).add(parts[9])
    return found


def pids_for_inodes(inodes: set[str], proc: Path = PROC) -> dict[str, int]:
    wanted = {f"socket:[{i}]" for i in inodes}
    owners: dict[str, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target in wanted:
                    owners[target[8:-1]] = int(entry.name)
        except OSError:
            continue
    return owners


def program_of(pid: int, proc: Path = PROC) -> str:
    try:
        cmdline = (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").strip().decode(errors="replace")
    except OSError:
        cmdline = ""
    if cmdline:
        return cmdline[:80]
    try:
        return (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


def container_holders(containers: list[dict[str, Any]]) -> dict[int, Holder]:
    """Host ports published by any container (engine list form), with its compose project."""
    held: dict[int, Holder] = {}
    for c in containers:
        labels = c.get("Labels") or {}
        name = (c.get("Names") or ["?"])[0].lstrip("/")
        for p in c.get("Ports") or []:
            if p.get("PublicPort"):
                held[int(p["PublicPort"])] = Holder(
                    int(p["PublicPort"]), container=name, project=labels.get("com.docker.compose.project", "")
                )
    return held


def find_holders(ports: list[int], containers: list[dict[str, Any]], proc: Path = PROC) -> dict[int, Holder]:
    held = {p: h for p, h in container_holders(containers).items() if p in ports}
    listening = listening_inodes(proc)
    inodes = {i for p in ports if p not in held for i in listening.get(p, set())}
    owners = pids_for_inodes(inodes, proc) if inodes else {}
    for port in ports:
        if port in held or port not in listening:
            continue
        pid = next((owners[i] for i in listening[port] if i in owners), None)
        held[port] = Holder(port, pid, program_of(pid, proc) if pid else "")
    return held


def check_ports(ctx: Context, proc: Path = PROC) -> list[Finding]:
    groups = [("ports.app", "MONTERO_APP_PORTS", ctx.setting("MONTERO_APP_PORTS", DEFAULT_APP_PORTS))]
    findings: list[Finding] = []
    if ctx.production:
        app = ((ctx.compose_config() or {}).get("services") or {}).get("app")
        if isinstance(app, dict) and not app.get("ports"):
            # compose.production.yml resets the app's ports: only nginx publishes any.
            groups = []
            findings.append(passed("ports.app", "the app publishes no host port in production (nginx fronts it)"))
        groups += [
            ("ports.http", "MONTERO_HTTP_PORT", ctx.setting("MONTERO_HTTP_PORT", DEFAULT_HTTP_PORT)),
            ("ports.https", "MONTERO_HTTPS_PORT", ctx.setting("MONTERO_HTTPS_PORT", DEFAULT_HTTPS_PORT)),
        ]
    containers = ctx.engine.containers(all=False) if ctx.engine is not None else []
    for check_id, var, spec in groups:
        try:
            ports = parse_ports(spec)
        except ValueError:
            findings.append(
                failed(check_id, f"{var}={spec!r} is not a port or a range", f"set {var} to e.g. 5000-5009 in .env")
            )
            continue
        holders = find_holders(ports, containers, proc)
        foreign = {p: h for p, h in holders.items() if h.project != ctx.project.name}
        shown = spec if len(ports) > 1 else str(ports[0])
        first = ports[0]
        if first in foreign:
            h = foreign[first]
            fix = (
                f"docker stop {h.container}"
                if h.container
                else (f"kill {h.pid}" if h.pid else f"ss -ltnp 'sport = :{first}'")
            )
            alternative = f"{first + 100}-{first + 109}" if len(ports) > 1 else str(first + 8000)
            findings.append(
                failed(
                    check_id,
                    f"port {first} ({var}) is taken by {h.describe()}",
                    f"{fix}   # or move the stack: set {var}={alternative} in .env",
                )
            )
        elif foreign:
            taken = ", ".join(f"{p} by {h.describe()}" for p, h in sorted(foreign.items()))
            findings.append(
                warned(
                    check_id,
                    f"ports of {var}={shown} in use: {taken}; scaling the app that far will fail",
                    f"free them or set {var} to a free range in .env",
                )
            )
        else:
            ours = sorted(holders)
            plural = "s" if len(ports) > 1 else ""
            if not ours:
                findings.append(passed(check_id, f"port{plural} {shown} free"))
            elif len(ports) == 1:
                findings.append(passed(check_id, f"port {shown} used by this stack"))
            else:
                findings.append(
                    passed(check_id, f"ports {shown}: {', '.join(map(str, ours))} used by this stack, the rest free")
                )
    return findings
