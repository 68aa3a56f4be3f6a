#!/usr/bin/env bash
# Start a PostgreSQL server on localhost for the tuner's multi-worker tests, and print its URL.
#
# Installs Debian's postgresql package when no server is installed, starts the
# first cluster (creating one when there is none), and creates the role and
# database the tests use when they are absent. Idempotent: run it again and it
# only prints the URL. The last line of stdout is the URL, e.g.
#   export VISDET_TEST_POSTGRES_URL="$(bash tools/dev/start_postgres.sh | tail -n 1)"
# Needs root (apt-get, and su to the postgres user: root cannot run the server itself).
set -euo pipefail
ROLE="${VISDET_PG_ROLE:-visdet}"
PASSWORD="${VISDET_PG_PASSWORD:-visdet}"
DB="${VISDET_PG_DB:-visdet_test}"

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    echo "start_postgres: installing Debian's postgresql package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
fi

# The first cluster listed (the package creates "main"); make one when none exists.
read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters -h | head -n 1) || true
if [ -z "${VERSION:-}" ]; then
    VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    pg_createcluster "$VERSION" main >&2
    read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters -h | head -n 1)
fi
if [ "$STATUS" != "online" ]; then
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi
# The server accepts connections a moment after pg_ctlcluster returns.
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PORT"

as_postgres() { su postgres -c "psql -v ON_ERROR_STOP=1 -p $PORT -tAq $*"; }
if [ "$(as_postgres "-c \"SELECT 1 FROM pg_roles WHERE rolname='$ROLE'\"")" != "1" ]; then
    as_postgres "-c \"CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'\"" >&2
fi
if [ "$(as_postgres "-c \"SELECT 1 FROM pg_database WHERE datname='$DB'\"")" != "1" ]; then
    as_postgres "-c \"CREATE DATABASE $DB OWNER $ROLE\"" >&2
fi
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
