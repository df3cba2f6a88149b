# Two commands do all set-up on a fresh Debian machine: `make demo` and `make test`.
# Both install what they need (system services via apt-get where missing, Python
# packages into .venv) and start everything themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup system venv test lint demo bench models micro-models clean

setup: system venv

# mosquitto, influxd and PostgreSQL come from Debian's packages; nothing is started here
# (the launcher in twinsync/services/ starts private instances on free ports). The
# tests also run systemd-analyze (deploy/systemd units), curl and openssl (the commands
# README.md and deploy/README.md give): each missing command's package is installed.
# PostgreSQL's initdb lives in /usr/lib/postgresql/<version>/bin, off PATH; the package
# makes and starts a system cluster, which is stopped and disabled again.
SYSTEM_NEEDS := mosquitto:mosquitto influxd:influxdb initdb:postgresql \
	systemd-analyze:systemd curl:curl openssl:openssl \
	chromium:chromium

system:
	@missing=""; for need in $(SYSTEM_NEEDS); do \
		cmd=$${need%%:*}; pkg=$${need#*:}; \
		command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || \
			ls /usr/lib/postgresql/*/bin/$$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
		$$SUDO systemctl disable --now mosquitto influxdb >/dev/null 2>&1 || true; \
		case "$$missing" in *postgresql*) \
			$$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true; \
			pg_lsclusters -h 2>/dev/null | while read -r ver name _rest; do \
				$$SUDO pg_ctlcluster "$$ver" "$$name" stop >/dev/null 2>&1 || true; \
			done;; \
		esac; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

demo: setup
	$(PY) -m twinsync demo

bench: setup
	$(PY) -m twinsync bench

# The default models shipped inside the package: trained on a simulated fleet, scored on
# another (seeded, so reproducible up to library versions); see docs/models.md.
models: venv
	$(PY) -m twinsync hub train --sim --unsigned --out edge_agent/models

# The micro-segment models, trained inside the segments of the segment models shipped in
# edge_agent/models: rerun after `make models` (docs/models.md, "Micro-segments").
micro-models: venv
	$(PY) -m twinsync hub train --micro edge_agent/models --devices 600 --days 40 --unsigned --out edge_agent/models

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
