# pgvectorizer: the `ai` extension (PGXS) plus the project's set-up, demo and test targets.

EXTENSION  = ai
EXTVERSION = 0.1.0

# Debian's per-version pg_config knows the server; /usr/bin/pg_config may be libpq's alone.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
# The user's Python (PGXS's own PYTHON is the server's).
PY        ?= python3
# Where the package lives for the interpreter PL/Python embeds. Baked into the install script
# (never a GUC: a user-settable sys.path would let any role run code as the server).
PYTHON_TARGET ?= /usr/local/lib/pgvectorizer/python
# Its third-party packages (numpy, httpx, sentence-transformers, torch, ...), kept apart so the
# package can be re-installed in a second without copying torch again.
PYTHON_DEPS   ?= /usr/local/lib/pgvectorizer/deps
# torch from a CPU wheel on disk when there is one: PyPI's pulls gigabytes of CUDA libraries.
TORCH_WHEEL   ?= $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl))

# The demo/test cluster (scripts/cluster.sh); a caller's own PGPORT/PGHOST win.
PGPORT ?= 5488
PGHOST ?= /var/run/postgresql
export PGPORT PGHOST

SQL_SOURCES = $(sort $(wildcard sql/*.sql))
DATA_built  = extension/ai--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard extension/ai--*.sql))
EXTRA_CLEAN = ai.control tests/regress/results tests/regress/regression.diffs tests/regress/regression.out

REGRESS      = $(sort $(basename $(notdir $(wildcard tests/regress/sql/*.sql))))
REGRESS_OPTS = --inputdir=tests/regress --outputdir=tests/regress \
               --load-extension=plpython3u --load-extension=vector --load-extension=ai

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
# No server headers yet (a fresh machine): only the set-up targets below can run.
all:
	@echo "PostgreSQL server development files not found; run 'make setup' first." >&2; exit 1
endif

all: ai.control $(DATA_built)

ai.control: control/ai.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/g' $< > $@

extension/ai--$(EXTVERSION).sql: $(SQL_SOURCES) Makefile
	@mkdir -p $(@D)
	cat $(SQL_SOURCES) | sed -e 's/@EXTVERSION@/$(EXTVERSION)/g' \
	    -e 's|@PYTHON_TARGET@|$(PYTHON_TARGET)|g' -e 's|@PYTHON_DEPS@|$(PYTHON_DEPS)|g' > $@

# The package for the server's own interpreter (Debian's /usr/bin/python3, which PL/Python
# embeds); same CPython minor version as the user's, so pip can target it directly.
# The old copy goes first, and setuptools' build/ with it: a build/lib left by an earlier
# version still holds the modules that version had, and they would be installed again.
install-python:
	rm -rf python_pkg/build $(PYTHON_TARGET)/pgvectorizer $(PYTHON_TARGET)/pgvectorizer-*.dist-info
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(PYTHON_TARGET) ./python_pkg

# What the package imports inside the server (python_pkg/requirements-server.txt).
install-python-deps:
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade --target $(PYTHON_DEPS) \
	    $(TORCH_WHEEL) -r python_pkg/requirements-server.txt

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup demo test pytest unit integration acceptance lint install-python install-python-deps
setup:
	$(SUDO) env PYTHON=$(shell command -v $(PY)) PGPORT=$(PGPORT) scripts/setup.sh

demo: setup
	PY=$(PY) scripts/demo.sh

test: setup
	$(MAKE) installcheck
	$(MAKE) lint
	$(MAKE) pytest

pytest:
	$(PY) -m pytest -q tests

# The suite by kind (tests/conftest.py): unit needs no database, integration the running
# cluster, acceptance real processes, pg_cron and the set-up script.
unit:
	$(PY) -m pytest -q tests/unit

integration:
	$(PY) -m pytest -q tests/integration

acceptance:
	$(PY) -m pytest -q tests/acceptance

lint:
	$(PY) -m ruff check python_pkg tests
	$(PY) -m mypy python_pkg/pgvectorizer
