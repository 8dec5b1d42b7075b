#!/usr/bin/env bash
# Stepmark on embedded defaults: an embedded PostgreSQL (data in var/pgdata), an embedded
# (file-system) broker and a worker, the demo project from ../shared/data, the web app at
# http://127.0.0.1:8000. A DATABASE_URL of your own replaces the embedded server.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
scripts/venv.sh
export DEBUG="${DEBUG:-true}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-filesystem://}"
mkdir -p var

worker=""
EMBEDDED_PG_STARTED=0
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$worker" ]; then
    kill "$worker" 2>/dev/null || true
    wait "$worker" 2>/dev/null || true
  fi
  # Only the run that started the embedded server stops it (a second ./run.sh reuses it).
  if [ "$EMBEDDED_PG_STARTED" = 1 ]; then
    echo "stopping the embedded PostgreSQL"
    .venv/bin/python scripts/embedded_postgres.py stop var/pgdata || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${DATABASE_URL:-}" ]; then
  pg_env="$(.venv/bin/python scripts/embedded_postgres.py start var/pgdata stepmark)"
  eval "$pg_env"
  echo "embedded PostgreSQL: $DATABASE_URL (log: var/pgdata/log)"
fi

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py demo_setup
.venv/bin/python -m celery -A stepmark worker -Q default,gpu --pool solo --loglevel INFO > var/worker.log 2>&1 &
worker=$!
echo "worker started (log: var/worker.log)"
.venv/bin/python manage.py runserver --noreload "${STEPMARK_ADDR:-127.0.0.1:8000}"
