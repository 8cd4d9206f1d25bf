# The README's two commands: `make up` (run the stack) and `make test` (the suite).
# Both do the whole machine set-up first (scripts/setup.sh, idempotent).
.PHONY: setup up down test unit

COMPOSE := docker compose --project-directory . -f docker/compose.yml --env-file .env

setup:
	bash scripts/setup.sh

up: setup
	.venv/bin/montero up $(ARGS)
	@port=$$($(COMPOSE) port app 5000 2>/dev/null | head -n 1 | sed 's/.*://'); \
	if [ -n "$$port" ]; then echo "Montero API: http://localhost:$$port/health"; \
	else echo "Montero (production, through nginx): http://localhost:$${MONTERO_HTTP_PORT:-80}/health"; fi

down:
	.venv/bin/montero down

test:
	bash scripts/test.sh

# Unit tests only (no Docker needed).
unit:
	.venv/bin/python -m pytest -m "not e2e" tests/unit
