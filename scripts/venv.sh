#!/usr/bin/env bash
# Make (or refresh) .venv at the repository root with the project and its dev extra.
# CPU torch comes from the local wheel (torch==2.13.0): any other torch pulls a multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.stepmark-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet "torch==2.13.0"
  .venv/bin/pip install --quiet -e ".[dev]"
  echo "$want" > "$stamp"
fi
