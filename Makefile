# The README's two commands: `make up` (run the stack) and `make test` (the suite).
# Both do the whole machine set-up first (scripts/setup.sh, idempotent).
.PHONY: setup up down test unit address

COMPOSE = docker compose --project-directory . -f docker/compose.yml $(if $(wildcard .env),--env-file .env)

setup:
	bash scripts/setup.sh

# ARGS passes options through, e.g. `make up ARGS="--profile production"`.
up: setup
	.venv/bin/montero up $(ARGS)


# Where to open the stack: the app's published port, or nginx's in production.
address:
	@port=$$($(COMPOSE) port app 5000 2>/dev/null | head -n 1 | sed 's/.*://'); \
	if [ -z "$$port" ] || [ "$$port" = 0 ]; then \
		port=$$($(COMPOSE) --profile production port nginx 80 2>/dev/null | head -n 1 | sed 's/.*://'); fi; \
	if [ -n "$$port" ] && [ "$$port" != 0 ]; then echo "Montero is up: http://localhost:$$port/health"; \
	else echo "Montero: no published port found (is the stack running? \`.venv/bin/montero ps\`)"; fi

down:
	.venv/bin/montero down

test:
	bash scripts/test.sh

# Unit tests only: no Docker needed, well under a minute.
unit:
	.venv/bin/python -m pytest -m "not e2e" tests/unit
