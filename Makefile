# Two commands: `make demo` (train the chapter's autoencoder on the bundled MNIST) and `make test`.
# Both set up .venv on first use: torch==2.13.0 first (the CPU build on most machines), then aekit itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aekit-installed

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (first run only)"
	@$(PY) -m pip install -qq --disable-pip-version-check "torch==2.13.0"
	@$(PY) -m pip install -qq --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	@$(PY) -m aekit train --preset chapter --out runs/demo --overwrite

test: $(STAMP)
	@$(PY) -m pytest -q

clean:
	rm -rf runs/demo .pytest_cache
