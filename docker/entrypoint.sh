#!/bin/sh
# Start the Montero API: prepare folders, wait for Redis (bounded), migrate, exec gunicorn.
#
# With arguments (`docker compose run app flask --app wsgi create-admin`) only the
# folders are prepared and the command is exec'd: no wait, no migration.
#
# Several replicas (`montero scale app=3`) start at the same moment and share ./data.
# Migrations therefore run under an exclusive flock on /app/data/.migrate.lock: the
# first replica migrates, the others wait, then find the schema at head and do
# nothing. The lock lives on the shared volume, so it serialises every container of
# the host (and works for PostgreSQL too, as long as the replicas share ./data).
set -eu

log() { printf 'montero-entrypoint: %s\n' "$*" >&2; }

# no-new-privileges for everything below: compose sets it (security_opt), a swarm cannot
# (`docker stack deploy` drops security_opt), so the entrypoint sets it itself when it is not set yet.
if ! grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status 2>/dev/null && command -v setpriv >/dev/null 2>&1; then
    exec setpriv --no-new-privs "$0" "$@"
fi

DATA_DIR=/app/data
LOGS_DIR=/app/logs
mkdir -p "$DATA_DIR" "$LOGS_DIR" 2>/dev/null || true
for dir in "$DATA_DIR" "$LOGS_DIR"; do
    if ! [ -w "$dir" ]; then
        log "ERROR: $dir is not writable by uid $(id -u)."
        log "fix: on the host, run \`sudo chown -R 1000:1000 data logs\` in the project folder (or \`montero setup\`)."
        exit 1
    fi
done

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# SECRET_KEY_FILE: the key is a Docker secret (swarm); the app reads the file.
if [ -z "${SECRET_KEY:-}" ] && [ -z "${SECRET_KEY_FILE:-}" ]; then
    log "################################################################"
    log "WARNING: SECRET_KEY is not set. Sessions and reset tokens are not safe,"
    log "and in production the app refuses to start. Generate one with:"
    log "  python -c \"import secrets; print(secrets.token_hex(32))\""
    log "and put it in .env (or run \`montero env init\`)."
    log "################################################################"
fi

# Bounded wait for Redis, only when rate limits are stored there. Plain Python
# sockets: the image needs no nc/redis-cli. If Redis stays down the app still
# starts (in-memory limits) and /health reports "degraded".
REDIS_URL_TO_WAIT="${RATELIMIT_STORAGE_URL:-}"
case "$REDIS_URL_TO_WAIT" in
    redis://* | rediss://*)
        timeout="${REDIS_WAIT_TIMEOUT:-30}"
        log "waiting up to ${timeout}s for Redis"
        if python -c '
import socket, sys, time
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
host, port = url.hostname or "localhost", url.port or 6379
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        with socket.create_connection((host, port), timeout=2):
            sys.exit(0)
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
' "$REDIS_URL_TO_WAIT" "$timeout"; then
            log "Redis is reachable"
        else
            log "WARNING: Redis not reachable after ${timeout}s; starting with in-memory rate limits"
        fi
        ;;
esac

cd /app
# Fast path: a SQLite database already at head needs no Alembic (its imports cost 1.5-2 s of every
# start on 2 cores, docs/benchmarks.md figure 4). Read-only and without the lock: a replica that is
# migrating has not moved the revision yet, so the answer is "not at head" and this one queues below.
if python migrations/at_head.py 2>/dev/null; then
    log "the database is at the head revision: nothing to migrate"
    exec gunicorn -c gunicorn.conf.py wsgi:app
fi
log "migrating the database (alembic upgrade head)"
# A database at a revision this release does not know was migrated by a newer release: this
# one is a rollback (`montero rollback`) and runs on the expanded schema (migrations are
# expand/contract, docs/releases.md). Any other failure stops the start.
if ! migrated=$(flock -w "${MIGRATE_LOCK_TIMEOUT:-300}" "$DATA_DIR/.migrate.lock" alembic upgrade head 2>&1); then
    printf '%s\n' "$migrated" >&2
    case "$migrated" in
        *"Can't locate revision identified by"*)
            log "the database was migrated by a newer release; this one runs on that schema without migrating"
            ;;
        *)
            log "ERROR: the migration failed (see the lines above); not starting the app"
            exit 1
            ;;
    esac
else
    [ -z "$migrated" ] || printf '%s\n' "$migrated" >&2
fi

exec gunicorn -c gunicorn.conf.py wsgi:app
