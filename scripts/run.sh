#!/usr/bin/env bash
# The main job, end to end on this machine: install, initialise an IL node in
# ./demo-data, import the sample incidents (with evidence), start the server,
# query it over gRPC, fetch and verify an evidence file, and stop the server
# with SIGTERM. Leaves ./demo-data for you to explore (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

D=${COMPACT_DEMO_DIR:-./demo-data}
rm -rf "$D" && mkdir -p "$D"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "compact init: an IL node whose keys are sealed under a key file kept outside its folder"
compact init --state IL --data-dir "$D/il" --key-file "$D/il.key" --listen 127.0.0.1:0 \
    --federation-listen 127.0.0.1:0

step "compact ingest examples/incidents.jsonl"
compact ingest examples/incidents.jsonl --data-dir "$D/il"
step "the same file again changes nothing"
compact ingest examples/incidents.jsonl --data-dir "$D/il"

step "compact serve (in the background; logs in $D/serve.log)"
compact serve --data-dir "$D/il" >"$D/serve.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -f "$D/il/run/server.json" ] && break; sleep 0.1; done
[ -f "$D/il/run/server.json" ] || { echo "server did not start:"; cat "$D/serve.log"; exit 1; }
cat "$D/il/run/server.json"; echo

step "compact incidents list"
compact incidents list --data-dir "$D/il"
step "compact incidents search --key 'badge:ICE-ERO:04471' (the same agent under three spellings)"
compact incidents search --data-dir "$D/il" --key "badge:ICE-ERO:04471"
step "compact incidents search --kind school --conduct masked_agent --json"
compact incidents search --data-dir "$D/il" --kind school --conduct masked_agent --json
gid=$(compact incidents search --data-dir "$D/il" --kind school --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["global_id"])')
step "compact incidents show $gid (as admin: personal data shown)"
compact incidents show "$gid" --data-dir "$D/il"
sha=$(compact incidents show "$gid" --data-dir "$D/il" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["evidence"][0]["sha256"])')
step "compact evidence get (decrypted by the node, SHA-256 verified by the client)"
compact evidence get "$gid" "$sha" -o "$D/evidence.bin" --data-dir "$D/il"
sha256sum "$D/evidence.bin"

step "an analyst sees the record without personal data"
compact users add ana --role analyst --data-dir "$D/il" --token-file "$D/analyst.token"
COMPACT_TOKEN_FILE="$D/analyst.token" compact incidents show "$gid" --data-dir "$D/il"
step "stopping the server (SIGTERM)"
kill -TERM $server; wait $server || true; trap - EXIT
tail -n 3 "$D/serve.log"
printf '\nDone. The node is in %s; start it again with: .venv/bin/compact serve --data-dir %s\n' "$D/il" "$D/il"
