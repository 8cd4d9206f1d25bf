# The README's two commands: `make up` (run the stack) and `make test` (the suite).
# Both do the whole machine set-up first (scripts/setup.sh, idempotent).
.PHONY: setup up down test unit

setup:
	bash scripts/setup.sh

# ARGS passes options through, e.g. `make up ARGS="--profile production"`.
up: setup
	.venv/bin/montero up $(ARGS)

down:
	.venv/bin/montero down

test:
	bash scripts/test.sh

# Unit tests only: no Docker needed, well under a minute.
unit:
	.venv/bin/python -m pytest -m "not e2e" tests/unit
