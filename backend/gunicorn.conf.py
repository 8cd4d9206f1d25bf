"""gunicorn settings for the Montero API (`gunicorn -c gunicorn.conf.py wsgi:app`, run from backend/ or /app)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cpus_available() -> int:
    """CPUs this process may use: the cgroup CPU quota (docker --cpus) when set, else the affinity mask."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = None
    try:  # cgroup v2
        max_value, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if max_value != "max":
            quota = int(max_value) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if q > 0 and p > 0:
                quota = q / p
        except (OSError, ValueError):
            pass
    if quota is not None:
        count = min(count, max(1, int(quota + 0.999)))
    return max(1, count)


def _workers() -> int:
    raw = os.environ.get("GUNICORN_WORKERS", "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            print(f"gunicorn.conf.py: ignoring GUNICORN_WORKERS={raw!r} (not an integer)", file=sys.stderr)
    return 2 * cpus_available() + 1


def _threads() -> int:
    raw = os.environ.get("GUNICORN_THREADS", "").strip()
    try:
        return max(1, int(raw)) if raw else 16
    except ValueError:
        print(f"gunicorn.conf.py: ignoring GUNICORN_THREADS={raw!r} (not an integer)", file=sys.stderr)
        return 16


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:5000")
workers = _workers()
# gthread, not sync: a sync worker blocks on one client's slow request headers, so 4 slow connections
# stalled /health (issue 12 point 4). gthread waits in its poller until a connection is readable and serves
# the others from a thread pool meanwhile. nginx (production) buffers whole requests in front of it anyway.
# 16 threads, not 8: one worker may accept every new connection while the others sleep, so one worker's
# threads must outnumber the slow clients (8 slow connections stalled /health with 8 threads).
worker_class = "gthread"
threads = _threads()
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = "-"  # access log on, to stdout (docker logs)
# %(U)s is the path without its query string: nothing a client puts in a URL query (a reset token in an old
# link, say) reaches a log line.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Workers write to /tmp-backed heartbeat files; /dev/shm keeps that working on a read_only root filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


# /metrics sums every worker (prometheus_client multiprocess mode): each worker writes mmap files into
# this folder. It must be set before the workers import prometheus_client, lives on a tmpfs (/dev/shm;
# the root filesystem is read-only in the container), is cleared at start (stale files from a previous
# master would be counted) and removed at exit. One folder per master, so two gunicorns never mix.
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(_SHM or "/tmp", f"montero-metrics-{os.getpid()}")
)


def _reset_metrics_dir() -> None:
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700, exist_ok=True)
    # Folders of masters that died without on_exit (SIGKILL) on a shared /dev/shm: remove them.
    parent = os.path.dirname(path)
    try:
        names = os.listdir(parent)
    except OSError:
        names = []
    for name in names:
        pid = name.removeprefix("montero-metrics-")
        if name != os.path.basename(path) and name.startswith("montero-metrics-") and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            except OSError:
                pass  # alive under another user


def child_exit(server: object, worker: object) -> None:
    """A dead worker's live gauges (in-flight, Redis degraded) stop counting; its counters stay summed."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


_ROTATOR: list[object] = []


def when_ready(server: object) -> None:
    """The master is the one process that rotates the shared log file (montero_api/logfiles.py)."""
    from montero_api.logfiles import LOG_FILE, Rotator
    from montero_api.settings import Settings

    settings = Settings.from_env()
    folder = Path(settings.LOG_DIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # before the workers do: they start after this hook
    except OSError:
        return
    if not os.access(folder, os.W_OK):
        return  # the workers log to stdout only then (logging_setup says so once per worker)
    rotator = Rotator(folder / LOG_FILE, settings.LOG_MAX_BYTES, settings.LOG_BACKUPS)
    rotator.start()
    _ROTATOR.append(rotator)


def on_starting(server: object) -> None:
    """Refuse to start (one line, exit 1) before forking workers when the settings cannot run."""
    _reset_metrics_dir()  # before montero_api (and so prometheus_client) is imported here
    from montero_api.settings import ConfigError, Settings

    try:
        Settings.from_env()
    except ConfigError as exc:
        print(f"montero_api: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
