#!/usr/bin/env bash
# Install kneescope with its development tools into .venv and run every quality gate:
# ruff (lint + format check), mypy, import-linter contracts, and pytest (default suite,
# with PostgreSQL and a one-node Slurm started for the integration tests when run as root).
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# The CPU build of torch first (see README: GPU users install a CUDA build instead).
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]'
# Test-only cohort steps, plugged in through the kneescope.steps entry points (tests/plugin_pkg).
.venv/bin/python -m pip install -q -e tests/plugin_pkg

export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check src tests benchmarks; ruff format --check src tests benchmarks
echo "== mypy"; mypy
echo "== import-linter"; lint-imports

# shellcheck source=services.sh
source scripts/services.sh start
trap 'bash scripts/services.sh stop' EXIT

echo "== pytest"
python -m pytest "$@"
