"""Issue 21 point 3: which volume `montero up` hands to the non-root redis user, and the command it runs."""

from __future__ import annotations

from montero_ops.services.redis_volume import CHOWN_SCRIPT, chown_command, redis_volume

CONFIG = {
    "services": {"redis": {"image": "redis:7-alpine", "user": "redis",
                           "volumes": [{"type": "volume", "source": "redis-data", "target": "/data"}]}},
    "volumes": {"redis-data": {"name": "shop_redis-data"}},
}


def test_named_volume_of_a_non_root_redis() -> None:
    assert redis_volume(CONFIG, "shop") == ("shop_redis-data", "redis:7-alpine")
    root = {"services": {"redis": {**CONFIG["services"]["redis"], "user": "0:0"}}}
    assert redis_volume(root, "shop") is None
    assert redis_volume({"services": {}}, "shop") is None


def test_chown_runs_without_network_and_with_only_chown_capabilities() -> None:
    cmd = chown_command("shop_redis-data", "redis:7-alpine")
    assert cmd[:4] == ["run", "--rm", "--network", "none"]
    caps = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--cap-add"]
    assert caps == ["CHOWN", "DAC_READ_SEARCH", "FOWNER"] and "--cap-drop" in cmd
    assert cmd[-3:] == ["redis:7-alpine", "-c", CHOWN_SCRIPT] and "chown -R redis:redis /data" in CHOWN_SCRIPT
