# Two commands for a fresh machine with Python 3.11+, git and make:
#   make demo   set up, then run the checks and the sender on the bundled examples
#   make test   set up, then run the tests and the linters
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo install test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@sh examples/demo.sh $(BIN)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pre-commit run --all-files --show-diff-on-failure
	$(BIN)/python -m pytest -q

# Every benchmark runs even when one misses its target; the target fails if any did.
bench: $(STAMP)
	@status=0; \
	$(BIN)/python bench/check_speed.py || status=1; \
	$(BIN)/python bench/send_speed.py || status=1; \
	$(BIN)/python bench/ldap_speed.py || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) build outbox .pytest_cache .ruff_cache
