# pgvectorizer: the `ai` extension (PGXS) plus the project's set-up, demo and test targets.

EXTENSION  = ai
EXTVERSION = 0.2.0

# Debian's per-version pg_config knows the server; /usr/bin/pg_config may be libpq's alone.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
# The user's Python (PGXS's own PYTHON is the server's).
PY        ?= python3
# Where the package lives for the interpreter PL/Python embeds. A .pth file in that
# interpreter's root-owned site directory names it (make install-python): never a GUC, since a
# user-settable sys.path would let any role run code as the server. 0.1.0's frozen script has
# it baked in at install time instead.
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
# Released scripts are frozen in extension/ (committed); the current version's install script
# and the upgrade scripts into it are built from sql/ until it is released.
UPGRADES    = $(patsubst sql/upgrade/%.sql,extension/ai--%.sql,$(wildcard sql/upgrade/*.sql))
CURRENT     = extension/ai--$(EXTVERSION).sql $(UPGRADES)
FROZEN      = $(filter-out $(CURRENT),$(wildcard extension/ai--*.sql))
# What is installed: frozen scripts get the Python paths they were released with (0.1.0's).
DATA_built  = $(CURRENT) $(patsubst extension/%,build/%,$(FROZEN))
# The same scripts inside the Python package, for `pgvectorizer install`.
PKG_SQL     = $(patsubst extension/%,python_pkg/pgvectorizer/install/sql/%,$(CURRENT) $(FROZEN))
BUILD_SQL   = PYTHONPATH=python_pkg $(PY) -m pgvectorizer.install.build
EXTRA_CLEAN = ai.control build python_pkg/pgvectorizer/install/sql tests/regress/results \
              tests/regress/regression.diffs tests/regress/regression.out tests/regress/plain/results \
              tests/regress/plain/regression.diffs tests/regress/plain/regression.out

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

all: ai.control $(DATA_built) $(PKG_SQL)

ai.control: control/ai.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/g' $< > $@

BUILD_TOOL = python_pkg/pgvectorizer/install/build.py python_pkg/pgvectorizer/install/sqltext.py

extension/ai--$(EXTVERSION).sql: $(SQL_SOURCES) $(BUILD_TOOL) Makefile
	$(BUILD_SQL) full $(EXTVERSION) $(SQL_SOURCES) > $@.tmp && mv $@.tmp $@

extension/ai--%--$(EXTVERSION).sql: sql/upgrade/%--$(EXTVERSION).sql $(SQL_SOURCES) $(BUILD_TOOL) Makefile
	$(BUILD_SQL) upgrade $< $(EXTVERSION) $(SQL_SOURCES) > $@.tmp && mv $@.tmp $@

build/%.sql: extension/%.sql Makefile
	@mkdir -p $(@D)
	sed -e 's|@PYTHON_TARGET@|$(PYTHON_TARGET)|g' -e 's|@PYTHON_DEPS@|$(PYTHON_DEPS)|g' $< > $@

python_pkg/pgvectorizer/install/sql/%.sql: extension/%.sql
	@mkdir -p $(@D)
	cp $< $@

# The plain install (pgvectorizer install) of the current version, for its pg_regress suite.
build/ai-plain.sql: extension/ai--$(EXTVERSION).sql $(BUILD_TOOL)
	@mkdir -p $(@D)
	$(BUILD_SQL) plain $< > $@.tmp && mv $@.tmp $@

# `make installcheck` runs both suites: the extension's (PGXS's REGRESS) and the plain install's.
PLAIN_REGRESS = $(sort $(basename $(notdir $(wildcard tests/regress/plain/sql/*.sql))))
installcheck: installcheck-plain
installcheck-plain: build/ai-plain.sql
	$(pg_regress_installcheck) --inputdir=tests/regress/plain --outputdir=tests/regress/plain \
	    --dbname=contrib_regression_plain --load-extension=vector $(PLAIN_REGRESS)

# The package for the server's own interpreter (Debian's /usr/bin/python3, which PL/Python
# embeds); same CPython minor version as the user's, so pip can target it directly.
# The old copy goes first, and setuptools' build/ with it: a build/lib left by an earlier
# version still holds the modules that version had, and they would be installed again.
# The .pth file puts both directories first on that interpreter's sys.path (site runs its
# `import` lines at start-up), where a plain line would put them after dist-packages.
SERVER_SITE = $(shell /usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_path("purelib", "posix_local"))' 2>/dev/null \
                || echo /usr/local/lib/python3/dist-packages)
install-python: $(PKG_SQL)
	rm -rf python_pkg/build $(PYTHON_TARGET)/pgvectorizer $(PYTHON_TARGET)/pgvectorizer-*.dist-info
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(PYTHON_TARGET) ./python_pkg
	mkdir -p $(SERVER_SITE)
	printf '%s\n' '# pgvectorizer (make install-python): the package and its dependencies for PL/Python' \
	    "import sys; sys.path[0:0] = [p for p in ('$(PYTHON_TARGET)', '$(PYTHON_DEPS)') if p not in sys.path]" \
	    > $(SERVER_SITE)/pgvectorizer.pth

# What the package imports inside the server (python_pkg/requirements-server.txt).
install-python-deps:
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade --target $(PYTHON_DEPS) \
	    $(TORCH_WHEEL) -r python_pkg/requirements-server.txt

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup demo test pytest unit integration acceptance lint install-python install-python-deps installcheck-plain
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
