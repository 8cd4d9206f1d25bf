#!/usr/bin/env bash
# The README's test command (and CI's): set the machine up, then run the whole suite:
# unit, backend and end-to-end. With CI=true the end-to-end tests must run (a missing
# Docker Engine is a failure, not a skip).
#
# Usage: scripts/test.sh [PYTEST ARGS...]      (also: make test; .ci/run)
#
# With no arguments (the whole suite) the three-node cluster tests (marker `cluster`, about 9
# minutes, mostly waiting on their own dockerds) and the other long modules (marker `lane2`: the
# releases and update e2e, about 10 minutes, and the backup, replication and monitoring e2e, about
# 8 more) run in a second pytest process beside everything else, with their
# own app image tag, so the suite stays under CI's 30 minutes. Their output is printed after the
# main run's; the exit code is the first non-zero of the two.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)

bash scripts/setup.sh

# The image overrides setup chose (local base images when no registry answers)
# reach the e2e projects, which are temp copies without this .env.
if [ -f .env ]; then
    while IFS= read -r line; do
        export "${line?}"
    done < <(grep -E '^MONTERO_(PYTHON|REDIS|NGINX|APP)_IMAGE=[^[:space:]]+$' .env || true)
fi

set +e
if [ "$#" -eq 0 ]; then
    cluster_log="$(mktemp /tmp/montero-cluster-tests.XXXXXX.log)"
    MONTERO_E2E_APP_IMAGE="${MONTERO_E2E_CLUSTER_APP_IMAGE:-montero-app:e2e-cluster}" \
        "$ROOT/.venv/bin/python" -m pytest -m "cluster or lane2" -p no:cacheprovider tests/e2e >"$cluster_log" 2>&1 &
    cluster_pid=$!
    trap 'kill "$cluster_pid" 2>/dev/null' INT TERM
    "$ROOT/.venv/bin/python" -m pytest -m "not cluster and not lane2"
    rc=$?
    wait "$cluster_pid"
    cluster_rc=$?
    echo "===== second process (pytest -m 'cluster or lane2', run in parallel): exit code $cluster_rc =====" >&2
    cat "$cluster_log"
    rm -f "$cluster_log"
    [ "$rc" -eq 0 ] && rc=$cluster_rc
else
    "$ROOT/.venv/bin/python" -m pytest "$@"
    rc=$?
fi
set -e
echo "scripts/test.sh: pytest exit code $rc after $(( $(date +%s) - start ))s" >&2
exit "$rc"
