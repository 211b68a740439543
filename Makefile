# Two commands: `make demo` (train the chapter's autoencoder on the bundled MNIST) and `make test`.
# Both set up .venv on first use: torch==2.13.0 first (the CPU build on most machines), then aekit itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aekit-installed

DOCS_STAMP := $(VENV)/.aekit-docs-installed

.PHONY: demo test fuzz setup browser clean docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (first run only)"
	@$(PY) -m pip install -qq --disable-pip-version-check "torch==2.13.0"
	@$(PY) -m pip install -qq --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	@$(PY) -m aekit demo --out runs/demo --overwrite
	@echo "next: explore the model in your browser: .venv/bin/aekit serve runs/demo  (then open http://127.0.0.1:8000/)"

test: $(STAMP) browser
	@$(PY) -m pytest -q

# The documentation site, built offline into site/ with warnings as errors; the chapter notebook is executed into
# its tutorial page (its run kept in runs/docs-notebook), and the built pages are checked for what they must hold.
docs: $(STAMP) $(DOCS_STAMP)
	@NO_MKDOCS_2_WARNING=1 AEKIT_NOTEBOOK_RUN=$(CURDIR)/runs/docs-notebook \
		MPLBACKEND=module://matplotlib_inline.backend_inline \
		$(PY) -m mkdocs build --strict --quiet --site-dir site
	@$(PY) docs/check_site.py site

$(DOCS_STAMP): pyproject.toml
	@$(PY) -m pip install -qq --disable-pip-version-check -e ".[docs]"
	@touch $(DOCS_STAMP)

# The property tests with many random examples (make test runs them derandomized, 200 examples each).
# Not part of CI: a random search may take minutes and find something new on any run.
fuzz: $(STAMP)
	@AEKIT_HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -k fuzz -p no:cacheprovider --hypothesis-show-statistics

# The report test renders report.html in a real headless Chromium; install it from the system packages if we
# can (root with apt), else that one test is skipped with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && echo "installing chromium for the report test" && \
	  apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	echo "note: Chromium is not installed; the browser test of the report will be skipped"

clean:
	rm -rf runs/demo .pytest_cache site
