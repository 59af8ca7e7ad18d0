#!/usr/bin/env bash
# form-compact.sh: initialise the three nodes of compose.yaml (CA, IL, MN) and form their
# compact, with the same `compact` commands, in the same order, as `compact demo`
# (node/demo.py) and the tests (tests/nodeproc.py form_compact):
#
#   keys    a key file per state (secrets/<state>.key, 32 random bytes) and the database
#           passwords (.env), unless they exist
#   init    `compact init` in each node's container, then `config`
#   config  copy each state's compact.toml (../examples/compose-<state>.toml) into its
#           data folder; restart running nodes afterwards (`docker compose restart`)
#   start   `docker compose up -d --wait`: the databases and the three `compact serve`
#   form    member cards, CA proposes roster version 1, CA runs the OPRF key ceremony on
#           it (threshold 2), IL signs, every node applies it with the pin, every node
#           imports its sealed share; then `compact sync` on each
#   status  `compact roster show` and `compact peers` on each node
#   all     (the default) every step above in order; steps already done are skipped
#
# Usage: ./form-compact.sh [all|keys|init|config|start|form|status]
# Environment: COMPOSE (default "docker compose"), EXPIRES (roster expiry, YYYY-MM-DD;
# default one year from today).
#
# The ceremony files (cards, proposal, sealed shares; public or sealed, never keys) are
# kept in ./ceremony. Nothing here is secret to the other nodes except secrets/ and .env.
# In a real compact each step runs at a different state, the files travel between them,
# and the members compare the pin out of band: see docs/deploying.md.
set -euo pipefail
cd "$(dirname "$0")"

read -r -a COMPOSE <<<"${COMPOSE:-docker compose}"
STATES=(CA IL MN)
THRESHOLD=2
CEREMONY=ceremony
if [ -z "${EXPIRES:-}" ]; then
  EXPIRES=$(date -u -d '+1 year' +%Y-%m-%d 2>/dev/null || date -u -v+1y +%Y-%m-%d)
fi

say() { printf '\n== %s\n' "$*" >&2; }
show() { printf '$ %s\n' "$*" >&2; }
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# `docker compose ...`, shown before it runs.
dc() {
  show "${COMPOSE[*]} $*"
  "${COMPOSE[@]}" "$@"
}

# `compact ARGS` inside the running node of STATE.
node() {
  local state=$1
  shift
  dc exec -T "$(lower "$state")" compact "$@"
}

# Copy a file from this host into the running node of STATE (written by the node's user,
# mode 0600), and back out.
put() { # put STATE HOST_FILE CONTAINER_PATH
  show "copy $2 -> $(lower "$1"):$3"
  "${COMPOSE[@]}" exec -T "$(lower "$1")" sh -c 'umask 077 && cat > "$1"' put "$3" <"$2"
}
get() { # get STATE CONTAINER_PATH HOST_FILE
  show "copy $(lower "$1"):$2 -> $3"
  (umask 077 && "${COMPOSE[@]}" exec -T "$(lower "$1")" cat "$2" >"$3")
}

step_keys() {
  say "key files and database passwords"
  mkdir -p secrets
  chmod 0700 secrets
  local state file
  for state in "${STATES[@]}"; do
    file="secrets/$(lower "$state").key"
    if [ -s "$file" ]; then
      echo "$file exists: kept" >&2
      continue
    fi
    (umask 077 && head -c 32 /dev/urandom >"$file")
    # Compose mounts file secrets as they are on the host; the node (UID 10001) must read it.
    chmod 0444 "$file"
    echo "made $file (back it up offline: without it the node's keys never open)" >&2
  done
  if [ ! -s .env ]; then
    (
      umask 077
      for state in "${STATES[@]}"; do
        printf '%s_DB_PASSWORD=%s\n' "$state" "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      done >.env
    )
    echo "made .env (database passwords)" >&2
  else
    echo ".env exists: kept" >&2
  fi
}

step_init() {
  say "initialising the nodes (compact init)"
  dc build
  dc up -d --wait ca-db il-db mn-db
  local state svc
  for state in "${STATES[@]}"; do
    svc=$(lower "$state")
    if "${COMPOSE[@]}" run --rm --no-deps --entrypoint test "$svc" -f /var/lib/compact/keys/keystore.json; then
      echo "$state is initialised already: kept" >&2
      continue
    fi
    dc run --rm --no-deps "$svc" init --state "$state" \
      --key-file /run/secrets/compact.key \
      --listen 0.0.0.0:7400 --federation-listen 0.0.0.0:7401
  done
  step_config
}

step_config() {
  say "installing each node's compact.toml"
  local state
  for state in "${STATES[@]}"; do
    dc run --rm --no-deps --entrypoint cp "$(lower "$state")" \
      /etc/compact/compact.toml /var/lib/compact/compact.toml
  done
}

step_start() {
  say "starting the nodes (compact serve)"
  dc up -d --wait
}

step_form() {
  say "forming the compact"
  local state first=${STATES[0]}
  local formed=()
  for state in "${STATES[@]}"; do
    if "${COMPOSE[@]}" exec -T "$(lower "$state")" compact roster show >/dev/null 2>&1; then
      formed+=("$state")
    fi
  done
  if [ "${#formed[@]}" -eq "${#STATES[@]}" ]; then
    echo "every node has a roster in force: the compact is formed (./form-compact.sh status)" >&2
    return 0
  elif [ "${#formed[@]}" -gt 0 ]; then
    echo "only ${formed[*]} have a roster in force: finish by hand with the files in" \
      "$CEREMONY/ (docs/deploying.md), or start again with \`docker compose down -v\`" >&2
    return 1
  fi
  mkdir -p "$CEREMONY"
  chmod 0700 "$CEREMONY"
  local cards=()
  for state in "${STATES[@]}"; do
    # A new, empty folder for this attempt (the ceremony refuses a used --out-dir).
    "${COMPOSE[@]}" exec -T "$(lower "$state")" sh -c 'rm -rf /tmp/ceremony && umask 077 && mkdir /tmp/ceremony'
    # The card goes to stdout: endpoint, TLS certificate and pin, public keys.
    (umask 077 && node "$state" roster card >"$CEREMONY/card-$state.json")
    put "$first" "$CEREMONY/card-$state.json" "/tmp/ceremony/card-$state.json"
    cards+=(--card "/tmp/ceremony/card-$state.json")
  done

  # The first state proposes version 1 and runs the OPRF key ceremony on it (it signs the
  # result); the proposal and a share sealed to each member come back here.
  node "$first" roster propose "${cards[@]}" --threshold "$THRESHOLD" \
    --expires "$EXPIRES" --out /tmp/ceremony/proposal.json
  node "$first" oprf ceremony /tmp/ceremony/proposal.json --threshold "$THRESHOLD" \
    --out-dir /tmp/ceremony/oprf
  get "$first" /tmp/ceremony/oprf/proposal.json "$CEREMONY/proposal.json"
  for state in "${STATES[@]}"; do
    get "$first" "/tmp/ceremony/oprf/share-$state.sealed" "$CEREMONY/share-$state.sealed"
  done

  # More members sign, up to the threshold (the first one signed already).
  for state in "${STATES[@]:1:THRESHOLD-1}"; do
    put "$state" "$CEREMONY/proposal.json" /tmp/ceremony/proposal.json
    node "$state" roster sign /tmp/ceremony/proposal.json
    get "$state" /tmp/ceremony/proposal.json "$CEREMONY/proposal.json"
  done

  # The pin: SHA-256 of version 1's payload. Founding members compare it out of band.
  local pin
  pin=$("${COMPOSE[@]}" exec -T "$(lower "$first")" python3 -c '
import base64, hashlib, json, sys
payload = base64.b64decode(json.load(sys.stdin)["envelope"]["payload"])
print(hashlib.sha256(payload).hexdigest())' <"$CEREMONY/proposal.json")
  say "the pin (SHA-256 of roster version 1): $pin"

  for state in "${STATES[@]}"; do
    put "$state" "$CEREMONY/proposal.json" /tmp/ceremony/roster-v1.json
    put "$state" "$CEREMONY/share-$state.sealed" "/tmp/ceremony/share-$state.sealed"
    node "$state" roster apply /tmp/ceremony/roster-v1.json --pin "$pin"
    node "$state" oprf import-share "/tmp/ceremony/share-$state.sealed"
  done
  echo "$pin" >"$CEREMONY/pin.txt"

  # A member that has not published its first checkpoint yet refuses the sync for a few
  # seconds; `compact serve` syncs on its own every federation.sync_interval_seconds anyway.
  say "first sync"
  local attempt
  for state in "${STATES[@]}"; do
    for attempt in 1 2 3 4 5 6; do
      if node "$state" sync; then
        break
      elif [ "$attempt" -eq 6 ]; then
        echo "warning: $state has not synced with every member yet; compact serve keeps" \
          "trying (./form-compact.sh status)" >&2
      else
        sleep 5
      fi
    done
  done
}

step_status() {
  local state
  for state in "${STATES[@]}"; do
    say "$state"
    node "$state" roster show
    node "$state" peers
  done
}

case "${1:-all}" in
  keys) step_keys ;;
  init) step_init ;;
  config) step_config ;;
  start) step_start ;;
  form) step_form ;;
  status) step_status ;;
  all)
    step_keys
    step_init
    step_start
    step_form
    step_status
    ;;
  -h | --help) sed -n '2,25p' "$0" ;;
  *)
    echo "usage: $0 [all|keys|init|config|start|form|status]" >&2
    exit 2
    ;;
esac
