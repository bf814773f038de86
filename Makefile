# Two commands for a fresh machine with Python 3.11+, git and make:
#   make demo   set up, then run the checks and the sender on the bundled examples
#   make test   set up, then run the tests and the linters
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

LOCK_TOOLS := build/lock-tools
COMPILE    = $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
             --no-emit-index-url --no-emit-find-links

.PHONY: demo install test lint bench clean lock lock-upgrade

# Every package comes from the lock file, checked against its hashes; the project itself is then
# installed from the working tree with the locked build backend (no unpinned download).
$(STAMP): pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@sh examples/demo.sh $(BIN)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pre-commit run --all-files --show-diff-on-failure
	$(BIN)/python -m pytest -q

# Every benchmark runs even when one misses its target; the target fails if any did.
bench: $(STAMP)
	@status=0; \
	$(BIN)/python bench/check_speed.py || status=1; \
	$(BIN)/python bench/send_speed.py || status=1; \
	$(BIN)/python bench/ldap_speed.py || status=1; \
	$(BIN)/python bench/site_speed.py || status=1; \
	exit $$status

# The lock files, from pyproject.toml (runtime for the workflows, dev for make): after editing its
# dependencies, `make lock` pins what is new and keeps the rest; `make lock-upgrade` takes the newest
# versions allowed. Both need the package index.
lock: $(LOCK_TOOLS)/bin/pip-compile
	$(COMPILE) -o requirements/runtime.txt pyproject.toml requirements/build.in
	$(COMPILE) --extra dev -o requirements/dev.txt pyproject.toml requirements/build.in

lock-upgrade: $(LOCK_TOOLS)/bin/pip-compile
	$(COMPILE) --upgrade -o requirements/runtime.txt pyproject.toml requirements/build.in
	$(COMPILE) --upgrade --extra dev -o requirements/dev.txt pyproject.toml requirements/build.in

$(LOCK_TOOLS)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet pip-tools==7.6.2

clean:
	rm -rf $(VENV) build outbox .pytest_cache .ruff_cache
