#!/usr/bin/env bash
# A real multi-node Docker Swarm on one Linux machine, for the test suite and for trying
# montero's multi-host path locally. Each node is its own dockerd in its own network
# namespace (privileged docker-in-docker is refused on many hosts, this is not), joined by
# veth pairs to a host bridge; a registry (Debian's docker-registry) listens on the bridge
# address so that images reach every node the way they would on real hosts.
#
#   scripts/cluster.sh up [NODES]    create NODES nodes (default 3): node 1 is the manager
#   scripts/cluster.sh env           print the shell lines that point docker/montero at node 1
#   scripts/cluster.sh status        nodes as the manager sees them
#   scripts/cluster.sh kill-node N   kill node N's dockerd (its namespace stays: a dead host)
#   scripts/cluster.sh start-node N  start node N's dockerd again (it rejoins by itself)
#   scripts/cluster.sh down          remove everything `up` made, by recorded pid and name
#
# Settings (environment): MONTERO_CLUSTER_DIR (state, default /tmp/montero-cluster),
# MONTERO_CLUSTER_NET (the bridge's /24 prefix, default 10.251.0), MONTERO_CLUSTER_REGISTRY_PORT
# (default 5556). Needs root, iproute2, iptables, util-linux (nsenter), docker.io,
# docker-registry (scripts/setup.sh installs them). `down` is safe to run at any time, also
# after a half-finished `up`; every step of it tolerates what is already gone.
set -euo pipefail

DIR="${MONTERO_CLUSTER_DIR:-/tmp/montero-cluster}"
NET="${MONTERO_CLUSTER_NET:-10.251.0}"
REG_PORT="${MONTERO_CLUSTER_REGISTRY_PORT:-5556}"
BRIDGE="mntbr0"
PREFIX="mnt"          # namespaces mnt1.., host-side veths mntv1..
HOST_ADDR="$NET.1"
REGISTRY="$HOST_ADDR:$REG_PORT"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_addr() { echo "$NET.1$1"; }
node_sock() { echo "$DIR/node$1/docker.sock"; }
node_docker() { local n="$1"; shift; DOCKER_HOST="unix://$(node_sock "$n")" docker "$@"; }
nodes() { cat "$DIR/nodes" 2>/dev/null || echo 0; }

require_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces, bridges, iptables)"; }

start_dockerd() {
    local i="$1" d="$DIR/node$1"
    mkdir -p "$d/data" "$d/exec"
    # nsenter --net, not `ip netns exec`: the latter remounts /sys and dockerd then fails with
    # "Devices cgroup isn't mounted".
    nsenter --net="/var/run/netns/$PREFIX$i" setsid dockerd \
        --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
        -H "unix://$(node_sock "$i")" --bip "172.31.$i.1/24" \
        --insecure-registry "$REGISTRY" --log-level warn \
        >>"$d/dockerd.log" 2>&1 </dev/null &
    local t
    for t in $(seq 1 60); do
        node_docker "$i" info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    tail -n 20 "$d/dockerd.log" >&2
    die "node $i: dockerd did not answer within 30 s (log: $d/dockerd.log)"
}

start_registry() {
    local d="$DIR/registry"
    mkdir -p "$d/data"
    cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
    command -v docker-registry >/dev/null || die "docker-registry is missing: apt-get install docker-registry"
    setsid docker-registry serve "$d/config.yml" >>"$d/registry.log" 2>&1 </dev/null &
    echo $! >"$d/registry.pid"
    local t
    for t in $(seq 1 40); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$REGISTRY/v2/', timeout=1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.25
    done
    die "the registry did not answer on $REGISTRY (log: $d/registry.log)"
}

cmd_up() {
    require_root
    local n="${1:-3}" i
    [[ "$n" =~ ^[1-9]$ ]] || die "NODES must be 1 to 9, not '$n'"
    if [ -f "$DIR/nodes" ]; then die "a cluster is already up in $DIR: scripts/cluster.sh down first"; fi
    for cmd in ip iptables nsenter dockerd docker; do
        command -v "$cmd" >/dev/null || die "$cmd is missing: run scripts/setup.sh"
    done
    mkdir -p "$DIR"
    echo "$n" >"$DIR/nodes"      # written first: `down` then knows what to remove
    log "bridge $BRIDGE $HOST_ADDR/24"
    ip link add "$BRIDGE" type bridge
    ip addr add "$HOST_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # The host's dockerd sets the FORWARD policy to DROP: let the nodes talk to each other.
    iptables -I DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
        || iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    for i in $(seq 1 "$n"); do
        ip netns add "$PREFIX$i"
        ip link add "${PREFIX}v$i" type veth peer name eth0 netns "$PREFIX$i"
        ip link set "${PREFIX}v$i" master "$BRIDGE" up
        ip -n "$PREFIX$i" addr add "$(node_addr "$i")/24" dev eth0
        ip -n "$PREFIX$i" link set eth0 up
        ip -n "$PREFIX$i" link set lo up
        ip -n "$PREFIX$i" route add default via "$HOST_ADDR"
    done
    start_registry
    for i in $(seq 1 "$n"); do
        log "node $i: dockerd at $(node_addr "$i") ($(node_sock "$i"))"
        start_dockerd "$i"
    done
    # Overlay subnets from a pool that cannot meet the bridge's.
    node_docker 1 swarm init --advertise-addr "$(node_addr 1)" --default-addr-pool 10.252.0.0/16 >/dev/null
    local token; token="$(node_docker 1 swarm join-token -q worker)"
    for i in $(seq 2 "$n"); do
        local ok=0 t
        for t in 1 2 3; do
            if node_docker "$i" swarm join --token "$token" "$(node_addr 1):2377" >/dev/null 2>&1; then ok=1; break; fi
            node_docker "$i" swarm leave --force >/dev/null 2>&1 || true
            sleep 2
        done
        [ "$ok" = 1 ] || die "node $i could not join the swarm at $(node_addr 1):2377"
    done
    for i in $(seq 1 "$n"); do
        local id; id="$(node_docker "$i" info --format '{{.Swarm.NodeID}}')"
        node_docker 1 node update --label-add "montero.node=node$i" "$id" >/dev/null
    done
    log "up: $n nodes, registry $REGISTRY; manager: DOCKER_HOST=unix://$(node_sock 1)"
    cmd_env
}

cmd_env() {
    [ -f "$DIR/nodes" ] || die "no cluster in $DIR: scripts/cluster.sh up"
    echo "export DOCKER_HOST=unix://$(node_sock 1)"
    echo "export MONTERO_CLUSTER_REGISTRY=$REGISTRY"
}

cmd_status() {
    [ -f "$DIR/nodes" ] || die "no cluster in $DIR"
    node_docker 1 node ls
}

cmd_kill_node() {
    local i="${1:?node number}" pid
    pid="$(cat "$DIR/node$i/dockerd.pid" 2>/dev/null)" || die "node $i has no dockerd pid"
    kill -9 "$pid" 2>/dev/null || true
    # The node's containers die with their daemon's shims only if we end them too:
    # a dead host takes its tasks with it.
    pkill -9 -f "containerd-shim.*$DIR/node$i/" 2>/dev/null || true
    rm -f "$DIR/node$i/dockerd.pid"
    log "node $i: dockerd (pid $pid) killed"
}

cmd_start_node() { start_dockerd "${1:?node number}"; log "node ${1}: dockerd started"; }

cmd_down() {
    local n i pid
    n="$(nodes)"
    [ "$n" != 0 ] || [ -d "$DIR" ] || { log "nothing to remove"; return 0; }
    [ "$n" != 0 ] || n=9
    for i in $(seq 1 "$n"); do
        pid="$(cat "$DIR/node$i/dockerd.pid" 2>/dev/null || true)"
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    pid="$(cat "$DIR/registry/registry.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    # Give dockerd time to stop its containers, then make sure.
    for _ in $(seq 1 30); do
        pgrep -f "dockerd --data-root $DIR/" >/dev/null || break
        sleep 0.5
    done
    pkill -9 -f "dockerd --data-root $DIR/" 2>/dev/null || true
    pkill -9 -f "containerd.*$DIR/" 2>/dev/null || true
    if [ -d "$DIR" ]; then
        mount | awk -v d="$DIR" 'index($3, d) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    fi
    for i in $(seq 1 "$n"); do
        ip netns del "$PREFIX$i" 2>/dev/null || true
        ip link del "${PREFIX}v$i" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    while iptables -D DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
    while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
    rm -rf "$DIR"
    log "down: nodes, namespaces, bridge, rule, registry and $DIR removed"
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    env) cmd_env ;;
    status) cmd_status ;;
    kill-node) shift; cmd_kill_node "$@" ;;
    start-node) shift; cmd_start_node "$@" ;;
    down) cmd_down ;;
    -h | --help | "") sed -n '2,21p' "$0"; [ -n "${1:-}" ] ;;
    *) die "unknown command '$1' (up, env, status, kill-node, start-node, down)" ;;
esac
