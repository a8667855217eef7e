#!/usr/bin/env bash
# Install kneescope with its development tools into .venv and run every quality gate:
# ruff (lint + format check), mypy, import-linter contracts, the documentation site's strict
# build, and pytest (default suite, with PostgreSQL and a one-node Slurm started for the
# integration tests when run as root).
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
# nnU-Net v2, for the test that its own integrity check accepts kneescope's nnU-Net export.
# Its network package asks for timm -> torchvision -> a multi-GB CUDA torch, which nnU-Net's
# planning and checks never import: those two packages come without their dependencies, the
# others with torch held at the build installed above.
NNUNET_PIN="$(mktemp)"; echo "torch==$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')" > "$NNUNET_PIN"
.venv/bin/python -m pip install -q -c "$NNUNET_PIN" 'acvl-utils>=0.2.6,<0.3' 'batchgenerators>=0.25.1' \
    'batchgeneratorsv2>=0.3.2' tqdm graphviz tifffile requests seaborn imagecodecs yacs einops 'blosc2>=3.3.2'
.venv/bin/python -m pip install -q --no-deps 'nnunetv2==2.8.1' 'dynamic-network-architectures>=0.4.4,<0.5'
rm -f "$NNUNET_PIN"

export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check src tests benchmarks; ruff format --check src tests benchmarks
echo "== mypy"; mypy
echo "== import-linter"; lint-imports
# The documentation site (mkdocs.yml): a broken link, a missing page or a docstring griffe
# cannot parse fails the build (--strict); the site goes to site/ (ignored by git).
echo "== docs"; mkdocs build --strict --quiet

# shellcheck source=services.sh
source scripts/services.sh start
trap 'bash scripts/services.sh stop' EXIT

echo "== pytest"
# both cores (pytest-xdist); tests of one outside service, or of the browser, share a worker
python -m pytest -n 2 --dist loadgroup "$@"
