# The commands the README names. `make setup` is idempotent: it installs only what is missing.
SHELL := /bin/bash
VENV := .venv
LAB_VENV := .venv-lab
PY := $(VENV)/bin/python
APT_PACKAGES := postgresql redis-server prometheus prometheus-alertmanager chromium
# What each apt package brings, to tell whether it is installed already.
APT_PROBES := /usr/lib/postgresql/*/bin/initdb /usr/bin/redis-server /usr/bin/redis-cli /usr/bin/prometheus \
	/usr/bin/prometheus-alertmanager /usr/bin/chromium

.PHONY: setup system-packages venv test lint demo lab clean

setup: system-packages venv

system-packages:
	@missing=0; for f in $(APT_PROBES); do ls $$f >/dev/null 2>&1 || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@command -v kubectl >/dev/null || echo "warning: kubectl not found; the tests that run it will fail"

venv: $(VENV)/.installed

# The runtime, the drill lab (the `lab` extra) and the test tools, editable.
$(VENV)/.installed: pyproject.toml setup.py
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[lab,test]'
	@touch $@

# The browser test (tests/e2e/test_jupyterlab.py) starts JupyterLab from its own venv and drives it
# with Debian's chromium through Playwright (pip, in .venv; no browser download).
test: setup $(LAB_VENV)/.installed
	@# irlib is installed editable, so pip compiled none of it; where PYTHONDONTWRITEBYTECODE is
	@# set (as on this image) each of the suite's processes would compile it again
	$(PY) -m compileall -q irlib tests
	$(PY) -m pytest -n 2 --dist loadgroup

demo: setup
	@scripts/demo

# JupyterLab lives in its own venv: imported beside papermill it slows every headless run
# (DESIGN.md); drills never need it, CI only for the browser test.
$(LAB_VENV)/.installed: pyproject.toml setup.py
	@test -x $(LAB_VENV)/bin/python || python3 -m venv $(LAB_VENV)
	$(LAB_VENV)/bin/python -m pip install -q --upgrade pip
	$(LAB_VENV)/bin/python -m pip install -q jupyterlab -e .
	@touch $@

lab: setup $(LAB_VENV)/.installed
	@eval "$$($(VENV)/bin/irlib lab up)" && cd notebooks && \
	  exec ../$(LAB_VENV)/bin/jupyter lab --ip=127.0.0.1 --no-browser --ServerApp.root_dir=. \
	    --ContentsManager.post_save_hook=irlib.interactive.post_save_hook \
	    $$([ "$$(id -u)" = 0 ] && echo --allow-root)

lint: venv
	$(VENV)/bin/ruff check irlib tests
	$(VENV)/bin/ruff format --check irlib tests
	$(VENV)/bin/mypy irlib

clean:
	rm -rf $(VENV) $(LAB_VENV) .pytest_cache build *.egg-info
