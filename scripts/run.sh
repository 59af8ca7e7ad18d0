#!/usr/bin/env bash
# The main job, end to end on this machine: install, then `compact demo`: a three-state
# compact (CA, IL, MN) on 127.0.0.1 in ./demo-data, formed, fed with synthetic incidents
# with planted cross-state patterns, synced and witnessed; matches and pattern reports, a
# bundle requested, approved and verified, an exhibit package exported and verified.
# Extra arguments go to `compact demo` (for example --keep to leave the nodes running).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

D=${COMPACT_DEMO_DIR:-./demo-data}
if [ -e "$D" ]; then
    # stop nodes a previous `--keep` run left serving from this folder
    for f in "$D"/*/run/server.json; do
        [ -f "$f" ] || continue
        pid=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid", ""))' "$f")
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    rm -rf "$D"
fi
compact demo --dir "$D" "$@"
