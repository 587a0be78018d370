#!/usr/bin/env bash
# A real OpenID provider on loopback for the identity tests and for trying sign-in by hand:
# Ory Hydra, built from the Go module proxy with a tiny sign-in app that accepts one configured
# user without asking (scripts/idp: one program), cached under
# $CACHE_ROOT/hydra-<release>-<hash of its sources and Go>/idp. It keeps everything in memory:
# a restart is a new provider (new keys, no clients). It signs anybody in: loopback only.
#
#   scripts/idp.sh build   build if needed (cgo, for SQLite); prints the binary's path
#   scripts/idp.sh up      start it on 127.0.0.1 (issuer http://127.0.0.1:4444, admin :4445,
#                          sign-in app :4446; IDP_PUBLIC, IDP_ADMIN, IDP_LOGIN, IDP_USER change
#                          them) and wait until it is ready; prints `export` lines
#   scripts/idp.sh down    stop what `up` started
#   scripts/idp.sh status  whether it runs
#
# The tests (tests/idp.py) call only `build` and start their own copy on free ports; CI
# (.ci/run) builds in the background while the suite's first tests run.
# Logs go to stderr and $STATE/idp.log; only `build` and `up` print on stdout.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MODULE="$HERE/idp"
CACHE_ROOT="${ONEOFF_IDP_CACHE:-/var/cache/oneoff-idp}"
STATE="${ONEOFF_IDP_STATE:-/run/oneoff-idp}"
PUBLIC="${IDP_PUBLIC:-127.0.0.1:4444}"
ADMIN="${IDP_ADMIN:-127.0.0.1:4445}"
LOGIN="${IDP_LOGIN:-127.0.0.1:4446}"
USER_NAME="${IDP_USER:-alice}"

log() { printf '[idp] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

release() {
  awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/ory/hydra/v2") print $(i + 1) }' \
    "$MODULE/go.mod"
}

build_dir() {  # the cache directory of these sources and this Go
  local hash
  hash=$( { cat "$MODULE"/go.mod "$MODULE"/go.sum "$MODULE"/*.go; go version; } \
    | sha256sum | cut -c1-12)
  echo "$CACHE_ROOT/hydra-$(release)-$hash"
}

build() {  # one build at a time: a second caller waits for the first, then finds the binary
  command -v go >/dev/null || die "needs Go (the module proxy builds the provider)"
  local dir
  dir=$(build_dir)
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.build.lock"
  flock 9
  if [ ! -x "$dir/idp" ]; then
    command -v gcc >/dev/null || die "needs gcc (Hydra's in-memory SQLite is cgo)"
    mkdir -p "$dir"
    local started=$SECONDS
    log "building Ory Hydra $(release) into $dir"
    (cd "$MODULE" && CGO_ENABLED=1 GOFLAGS=-mod=readonly nice -n "${ONEOFF_IDP_NICE:-10}" \
      go build -trimpath -tags sqlite,sqlite_omit_load_extension -ldflags='-s -w' \
      -o "$dir/idp.new" .) >&2
    mv "$dir/idp.new" "$dir/idp"
    log "built in $((SECONDS - started)) s"
  fi
  exec 9>&-
  echo "$dir/idp"
}

ready() { curl -sf "http://$ADMIN/health/ready" >/dev/null; }

running() { [ -f "$STATE/idp.pid" ] && kill -0 "$(cat "$STATE/idp.pid")" 2>/dev/null; }

up() {
  local binary
  binary=$(build)
  mkdir -p "$STATE"
  if ! running; then
    log "starting the provider: issuer http://$PUBLIC, admin http://$ADMIN"
    nohup "$binary" serve --public "$PUBLIC" --admin "$ADMIN" --login "$LOGIN" \
      --user "$USER_NAME" >"$STATE/idp.log" 2>&1 &
    echo $! >"$STATE/idp.pid"
  fi
  for _ in $(seq 1 150); do
    ready && break
    running || { tail -20 "$STATE/idp.log" >&2; die "the provider exited"; }
    sleep 0.2
  done
  ready || die "the provider did not become ready in 30 s (see $STATE/idp.log)"
  printf 'export IDP_ISSUER=http://%s IDP_ADMIN_URL=http://%s\n' "$PUBLIC" "$ADMIN"
}

down() {
  if running; then
    kill "$(cat "$STATE/idp.pid")"
    log "stopped"
  fi
  rm -f "$STATE/idp.pid"
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  status) if running && ready; then log "ready at http://$PUBLIC"; else log "not running"; exit 1; fi ;;
  *) die "usage: $0 build|up|down|status" ;;
esac
