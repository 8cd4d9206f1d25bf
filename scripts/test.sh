#!/usr/bin/env bash
# The README's test command (and CI's): set the machine up, then run the whole suite:
# unit, backend and end-to-end. With CI=true the end-to-end tests must run (a missing
# Docker Engine is a failure, not a skip).
#
# Usage: scripts/test.sh [PYTEST ARGS...]      (also: make test; .ci/run)
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
"$ROOT/.venv/bin/python" -m pytest "$@"
rc=$?
set -e
echo "scripts/test.sh: pytest exit code $rc after $(( $(date +%s) - start ))s" >&2
exit "$rc"
