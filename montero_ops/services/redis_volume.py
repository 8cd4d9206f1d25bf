"""Redis runs as its own non-root user: its named volume must belong to that user before it starts.

A new named volume is created owned by root when the image has no /data of its own (montero-base,
a plain Debian redis-server), and volumes from before Redis ran non-root hold root-owned files.
Either way a non-root redis-server cannot write its AOF and exits. `montero up` therefore creates
the volume with compose's labels (so compose adopts it without a warning) and, when its folder is
owned by root, hands it to `redis` in a throwaway container that has only the capabilities chown
needs and no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from python_on_whales import DockerClient

VOLUME_KEY = "redis-data"
CHOWN_SCRIPT = '[ "$(stat -c %U /data)" = redis ] && [ -z "$(find /data ! -user redis | head -n 1)" ] || chown -R redis:redis /data'


def redis_volume(config: dict[str, Any], project_name: str) -> tuple[str, str] | None:
    """(volume name, redis image) when the redis service runs non-root on the named volume, else None."""
    service = (config.get("services") or {}).get("redis") or {}
    if not service.get("user") or str(service["user"]).split(":")[0] in ("0", "root"):
        return None
    for mount in service.get("volumes") or []:
        if isinstance(mount, dict) and mount.get("type") == "volume" and mount.get("target") == "/data":
            key = str(mount.get("source") or "")
            declared = ((config.get("volumes") or {}).get(key) or {})
            return str(declared.get("name") or f"{project_name}_{key}"), str(service.get("image"))
    return None


def chown_command(volume: str, image: str) -> list[str]:
    return ["run", "--rm", "--network", "none", "--user", "0", "--cap-drop", "ALL", "--cap-add", "CHOWN",
            "--cap-add", "DAC_READ_SEARCH", "--cap-add", "FOWNER", "--security-opt", "no-new-privileges:true",
            "--entrypoint", "sh", "--volume", f"{volume}:/data", image, "-c", CHOWN_SCRIPT]


def prepare(client: DockerClient, config: dict[str, Any], project_name: str) -> bool:
    """Create the volume (compose's labels) and give it to `redis` when needed. True when a container ran."""
    import subprocess

    found = redis_volume(config, project_name)
    if found is None:
        return False
    volume, image = found
    from montero_ops.client import built_from

    docker = list(built_from(client).client_call)
    inspect = subprocess.run([*docker, "volume", "inspect", "--format", "{{.Mountpoint}}", volume],
                             capture_output=True, text=True, check=False)
    if inspect.returncode != 0:
        key = volume.removeprefix(f"{project_name}_")
        subprocess.run([*docker, "volume", "create", "--label", f"com.docker.compose.project={project_name}",
                        "--label", f"com.docker.compose.volume={key}", volume],
                       capture_output=True, text=True, check=True)
    else:
        import os

        mountpoint = inspect.stdout.strip()
        try:
            if os.stat(mountpoint).st_uid != 0:
                return False  # already handed over (fast path: no container when this host can look)
        except OSError:
            pass  # not readable from here (rootless, remote engine): let the container decide
    done = subprocess.run([*docker, *chown_command(volume, image)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        from montero_ops.errors import CommandFailed

        line = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CommandFailed(f"could not give the Redis volume {volume} to the redis user: {line}",
                            hint=f"by hand: docker {' '.join(chown_command(volume, image))}")
    return True
