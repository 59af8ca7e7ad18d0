#!/usr/bin/env bash
# The test command: install what is needed, make sure PostgreSQL runs if it is
# installed here, run the lint gate, then the test suite (slow tests excluded).
# Extra arguments go to pytest, e.g. scripts/test.sh -k ingest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --with-tools

# PostgreSQL at 127.0.0.1:5432: start the local cluster if it is installed but down.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "test: starting the local PostgreSQL cluster" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 20); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
fi
pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || echo "test: PostgreSQL is not reachable at 127.0.0.1:5432; its tests will skip" >&2

scripts/lint.sh
# Two workers by default (COMPACT_TEST_WORKERS; 0 runs in this process); each test file
# runs whole on one worker, so a file's module fixtures (real nodes) are made once.
exec .venv/bin/python -m pytest -n "${COMPACT_TEST_WORKERS:-2}" --dist loadfile "$@"
