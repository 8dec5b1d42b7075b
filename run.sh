#!/usr/bin/env bash
# Stepmark on embedded defaults: an embedded PostgreSQL (data in var/pgdata), an embedded
# (file-system) broker, a worker per queue and beat, the demo project from ../shared/data, the web app at
# http://127.0.0.1:8000. A DATABASE_URL of your own replaces the embedded server.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
scripts/venv.sh
export DEBUG="${DEBUG:-true}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-filesystem://}"
mkdir -p var

children=()
EMBEDDED_PG_STARTED=0
cleanup() {
  trap - EXIT INT TERM
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${children[@]}"; do wait "$pid" 2>/dev/null || true; done
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
# One worker per queue, so a long MC or training job on `gpu` never holds up an export on
# `default`; beat runs the schedules (retraining) and the reaper that re-sends lost chunks.
for queue in default gpu; do
  .venv/bin/python -m celery -A stepmark worker -Q "$queue" -n "$queue@%h" --pool solo --loglevel INFO \
    > "var/worker-$queue.log" 2>&1 &
  children+=($!)
done
.venv/bin/python -m celery -A stepmark beat --loglevel INFO > var/beat.log 2>&1 &
children+=($!)
echo "workers (default, gpu) and beat started (logs: var/worker-default.log, var/worker-gpu.log, var/beat.log)"
.venv/bin/python manage.py runserver --noreload "${STEPMARK_ADDR:-127.0.0.1:8000}"
