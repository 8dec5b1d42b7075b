#!/usr/bin/env bash
# The whole test suite on PostgreSQL and Redis: ./test.sh [pytest args]
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
scripts/venv.sh
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/stepmark}"
export CELERY_BROKER_URL="${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}"
exec .venv/bin/python -m pytest "$@"
