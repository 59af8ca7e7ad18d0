#!/usr/bin/env bash
# Install everything the project needs into .venv (and tools/node_modules for buf).
# Safe to run again; quiet when everything is in place. Used by run.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: Python 3.11 or newer is required (set PYTHON=...)" >&2
  exit 1
fi

# System library: libsodium (PyNaCl bundles its own; pysodium, for ristretto255, needs the system one).
if ! ldconfig -p 2>/dev/null | grep -q 'libsodium\.so\.23'; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing libsodium23" >&2
    (apt-get install -y -q libsodium23 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libsodium23 >/dev/null; })
  else
    echo "bootstrap: warning: libsodium23 is not installed (apt-get install libsodium23)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi

if [ "${1:-}" = "--with-tools" ] && [ -f tools/package.json ] && [ ! -x tools/node_modules/.bin/buf ]; then
  if command -v npm >/dev/null; then
    echo "bootstrap: installing buf (npm)" >&2
    npm ci --prefix tools --no-audit --no-fund --loglevel=error >/dev/null
  else
    echo "bootstrap: warning: npm not found; buf lint will be skipped" >&2
  fi
fi
