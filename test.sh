#!/usr/bin/env bash
# The whole test suite on PostgreSQL and Redis: ./test.sh [pytest args]
# TEST_DATABASE_URL names a PostgreSQL server to use; without it the embedded server of ./run.sh
# serves (var/pgdata, started here when it is not running and stopped again afterwards).
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
scripts/venv.sh
export CELERY_BROKER_URL="${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}"
if [ -n "${TEST_DATABASE_URL:-}" ]; then
  export DATABASE_URL="$TEST_DATABASE_URL"
  exec .venv/bin/python -m pytest "$@"
fi

mkdir -p var
EMBEDDED_PG_STARTED=0
# pytest creates and drops test_stepmark beside the `stepmark` database of ./run.sh.
pg_env="$(.venv/bin/python scripts/embedded_postgres.py start var/pgdata stepmark)"
eval "$pg_env"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$EMBEDDED_PG_STARTED" = 1 ]; then
  .venv/bin/python scripts/embedded_postgres.py stop var/pgdata || true
fi
exit "$status"
