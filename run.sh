#!/usr/bin/env bash
# Stepmark on embedded defaults: SQLite in var/, the demo project from ../shared/data, the web app.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
scripts/venv.sh
export DEBUG="${DEBUG:-true}"
mkdir -p var
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py demo_setup
exec .venv/bin/python manage.py runserver "${STEPMARK_ADDR:-127.0.0.1:8000}"
