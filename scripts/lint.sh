#!/usr/bin/env bash
# The lint gate (run by scripts/test.sh): formatting, lint, types, protos, generated code.
# Runs from anywhere. PYTHON picks the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

echo "lint: ruff format --check"
"$PYTHON" -m ruff format --check .

echo "lint: ruff check"
"$PYTHON" -m ruff check .

echo "lint: mypy (strict)"
"$PYTHON" -m mypy

echo "lint: buf lint protos"
if [ ! -x tools/node_modules/.bin/buf ]; then
  echo "lint: installing buf (npm ci --prefix tools)" >&2
  npm ci --prefix tools --no-audit --no-fund --loglevel=error >/dev/null
fi
tools/node_modules/.bin/buf lint protos

echo "lint: generated protobuf code is current (scripts/gen_protos.py --check)"
"$PYTHON" scripts/gen_protos.py --check
