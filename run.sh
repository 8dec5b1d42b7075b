#!/usr/bin/env bash
# Stepmark on embedded defaults: SQLite in var/, an embedded (file-system) broker and a worker,
# the demo project from ../shared/data, the web app at http://127.0.0.1:8000.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
scripts/venv.sh
export DEBUG="${DEBUG:-true}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-filesystem://}"
mkdir -p var
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py demo_setup
.venv/bin/python -m celery -A stepmark worker -Q default,gpu --pool solo --loglevel INFO > var/worker.log 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT INT TERM
echo "worker started (log: var/worker.log)"
.venv/bin/python manage.py runserver --noreload "${STEPMARK_ADDR:-127.0.0.1:8000}"
