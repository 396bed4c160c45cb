#!/usr/bin/env bash
# The project's own PostgreSQL 15 cluster (15/pgvectorizer) for the demo and the tests.
# Uses Debian's postgresql-common tools, which work with or without systemd.
#   start   create the cluster if missing, (re)start it when needed, ensure role + database
#   stop    stop it
#   status  pg_lsclusters line; exit 0 running, 3 stopped, 4 missing
#   psql    psql on the pgvectorizer database; extra args are passed through
#   env     print export lines for PGHOST/PGPORT/PGDATABASE (eval "$(scripts/cluster.sh env)")
set -euo pipefail

VERSION=15
NAME=pgvectorizer
PORT=${PGPORT:-5488}
SOCKDIR=/var/run/postgresql
DB=pgvectorizer
# The login role matches the OS user behind sudo, so peer auth lets them in without a password.
ROLE=${SUDO_USER:-$(id -un)}
CONFDIR=/etc/postgresql/$VERSION/$NAME
CONF=$CONFDIR/conf.d/pgvectorizer.conf
ENVFILE=$CONFDIR/environment   # the server processes' environment (pg_ctlcluster reads it)

say() { echo "cluster: $*"; }
die() { echo "cluster: $*" >&2; exit 1; }

# Cluster files belong to postgres; root (make setup) or postgres itself can act directly.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
    elif [ "$(id -un)" = postgres ]; then "$@"
    else sudo -u postgres -- "$@"; fi
}
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -- "$@"; fi
}

exists() { [ -f "$CONFDIR/postgresql.conf" ]; }
state() { pg_lsclusters -h "$VERSION" "$NAME" 2>/dev/null | awk '{print $4}'; }
running() { case "$(state)" in online*) return 0 ;; *) return 1 ;; esac; }

# The running postmaster's executable was replaced (apt upgraded postgresql-15 while it ran;
# Debian's policy-rc.d may have stopped the package scripts from restarting it).
binary_replaced() {
    local datadir pid
    datadir=$(pg_conftool -s "$VERSION" "$NAME" show data_directory)
    pid=$(as_postgres head -n1 "$datadir/postmaster.pid" 2>/dev/null) || return 1
    [[ "$(as_postgres readlink "/proc/$pid/exe" 2>/dev/null)" == *"(deleted)" ]]
}

desired_conf() {
    cat <<EOF
# Managed by scripts/cluster.sh: local edits are overwritten on the next 'start'.
# Loopback only, named explicitly: /etc/hosts may map "localhost" to 127.0.0.1 alone. A host
# without IPv6 just logs a warning for ::1.
listen_addresses = '127.0.0.1, ::1'
max_connections = 200
shared_preload_libraries = 'pg_cron'
cron.database_name = '$DB'
# Run cron jobs in background workers instead of libpq connections to localhost, so jobs
# need no password or .pgpass for the postgres OS user.
cron.use_background_workers = on
# Room for pg_cron's job workers next to parallel query workers.
max_worker_processes = 24
# Durability (fsync, synchronous_commit, full_page_writes) stays at PostgreSQL's defaults.
EOF
}

# What in-database runs (PL/Python) see in os.environ.
desired_env() {
    cat <<'EOF'
# Managed by scripts/cluster.sh: local edits are overwritten on the next 'start'.
# Same syntax as postgresql.conf. Models come from local paths or packages, never a hub.
HF_HUB_OFFLINE = 1
TOKENIZERS_PARALLELISM = 'false'
# A dummy key for the tests' fake OpenAI server on loopback (api_key_name in their configs);
# real keys go here too, never into the database.
PGVECTORIZER_TEST_API_KEY = 'test-key-not-a-secret'
# Where that key may go (the fake servers' ports vary), and where in-database runs and ai.embed
# may send requests at all: loopback only. An operator lists real endpoints here.
PGVECTORIZER_KEY_ENDPOINTS = 'PGVECTORIZER_TEST_API_KEY=http://127.0.0.1:*'
PGVECTORIZER_ALLOWED_ENDPOINTS = 'http://127.0.0.1:*'
EOF
}

# TCP logins (127.0.0.1/::1) keep Debian's scram-sha-256 rule instead of trust: trust would let
# any local OS user become this superuser and, via COPY ... PROGRAM, the postgres OS user.
# The generated password goes into the role owner's ~/.pgpass (mode 600), which libpq (psql,
# psycopg) reads by itself, so local TCP clients still need no password typed in.
pgpass_password() {
    local home pgpass pw
    home=$(getent passwd "$ROLE" | cut -d: -f6)
    pgpass=$home/.pgpass
    pw=$(awk -F: -v p="$PORT" -v r="$ROLE" '$1 == "localhost" && $2 == p && $4 == r {print $5; exit}' \
        "$pgpass" 2>/dev/null || true)
    if [ -z "$pw" ]; then
        pw=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')   # hex: no ':' or '\' to escape
        ( umask 077
          printf '%s:%s:*:%s:%s\n' localhost "$PORT" "$ROLE" "$pw" 127.0.0.1 "$PORT" "$ROLE" "$pw" \
              '\:\:1' "$PORT" "$ROLE" "$pw" >>"$pgpass" )
        chown "$ROLE:" "$pgpass"
        say "wrote TCP password for role $ROLE to $pgpass" >&2
    fi
    chmod 600 "$pgpass"   # libpq ignores a .pgpass that others can read
    echo "$pw"
}

ensure_role_and_db() {
    local pw
    pw=$(pgpass_password)
    # psql reads the script (and the password) from stdin, so nothing shows up in ps.
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -d postgres <<EOF
\\set role '$ROLE'
\\set db '$DB'
\\set pw '$pw'
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec
SELECT format('ALTER ROLE %I SUPERUSER LOGIN PASSWORD %L', :'role', :'pw') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec
EOF
}

start() {
    local restart=0
    if ! exists; then
        say "creating cluster $VERSION/$NAME on port $PORT"
        # C.UTF-8: UTF8 encoding and byte-order collation, the same on every machine.
        # manual: only this script starts it, not the system's boot-time postgresql service.
        as_root pg_createcluster --port "$PORT" --socketdir "$SOCKDIR" --locale C.UTF-8 \
            --start-conf manual "$VERSION" "$NAME" >/dev/null
    fi
    if [ "$(pg_conftool -s "$VERSION" "$NAME" show port)" != "$PORT" ]; then
        say "moving cluster to port $PORT"
        as_postgres pg_conftool "$VERSION" "$NAME" set port "$PORT"
        restart=1
    fi
    if ! desired_conf | cmp -s - "$CONF"; then
        say "writing $CONF"
        desired_conf | as_postgres tee "$CONF" >/dev/null
        restart=1   # shared_preload_libraries only takes effect on a restart
    fi
    if ! desired_env | cmp -s - "$ENVFILE"; then
        say "writing $ENVFILE"
        desired_env | as_postgres tee "$ENVFILE" >/dev/null
        restart=1
    fi
    if ! running; then
        say "starting cluster $VERSION/$NAME"
        as_root pg_ctlcluster "$VERSION" "$NAME" start
    elif [ "$restart" = 1 ] || binary_replaced; then
        say "restarting cluster $VERSION/$NAME (settings or binaries changed)"
        as_root pg_ctlcluster "$VERSION" "$NAME" restart
    else
        say "cluster $VERSION/$NAME already running on port $PORT"
    fi
    ensure_role_and_db
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    start) start ;;
    stop)
        if exists && running; then as_root pg_ctlcluster "$VERSION" "$NAME" stop
        else say "cluster $VERSION/$NAME is not running"; fi ;;
    status)
        exists || { say "cluster $VERSION/$NAME does not exist"; exit 4; }
        pg_lsclusters "$VERSION" "$NAME"
        running || exit 3 ;;
    psql) exec psql -h "$SOCKDIR" -p "$PORT" -d "$DB" "$@" ;;
    env)
        echo "export PGHOST=$SOCKDIR"
        echo "export PGPORT=$PORT"
        echo "export PGDATABASE=$DB" ;;
    *) die "usage: $0 {start|stop|status|psql|env}" ;;
esac
