#!/usr/bin/env bash
# Provision what the test suite needs on a Debian machine, idempotently:
#   - uv, a running Docker engine,
#   - a local test image built from Debian's busybox-static (no public registry is reachable),
#   - a private registry on 127.0.0.1 with an htpasswd user, holding that image.
# Every step checks first, so running it twice is cheap.
set -euo pipefail

TEST_IMAGE="${RUNNER_TEST_IMAGE:-oneoff-test/busybox:latest}"
REGISTRY_ADDR="${RUNNER_TEST_REGISTRY:-127.0.0.1:5000}"
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

ensure_registry() {
  apt_install docker-registry apache2-utils
  local conf="$STATE_DIR/registry"
  mkdir -p "$conf/data"
  htpasswd -Bbc "$conf/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1
  cat >"$conf/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $conf/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
auth:
  htpasswd:
    realm: oneoff-runner-ci
    path: $conf/htpasswd
YAML
  # Debian's package may start its own registry on :5000 without auth; ours must own the port.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop docker-registry >/dev/null 2>&1 || true; fi
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" || true)
  if [ "$code" != "401" ]; then
    pkill -f 'docker-registry serve' >/dev/null 2>&1 || true
    log "starting the private registry on $REGISTRY_ADDR"
    nohup docker-registry serve "$conf/config.yml" >"$STATE_DIR/registry.log" 2>&1 &
    wait_for "the registry" 30 sh -c "curl -s -o /dev/null -w '%{http_code}' http://$REGISTRY_ADDR/v2/ | grep -q 401"
  fi
  local private="$REGISTRY_ADDR/oneoff-test/private-busybox:latest"
  if ! curl -sf -u "$REGISTRY_USER:$REGISTRY_PASSWORD" \
      "http://$REGISTRY_ADDR/v2/oneoff-test/private-busybox/manifests/latest" \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' >/dev/null; then
    log "pushing the test image to the private registry"
    docker tag "$TEST_IMAGE" "$private"
    printf '%s' "$REGISTRY_PASSWORD" | docker login -u "$REGISTRY_USER" --password-stdin "$REGISTRY_ADDR" >/dev/null
    docker push -q "$private" >/dev/null
    docker logout "$REGISTRY_ADDR" >/dev/null
  fi
  # The tests must pull it themselves, with credentials.
  docker image rm "$private" >/dev/null 2>&1 || true
}

apt_install curl ca-certificates
ensure_uv
ensure_docker
ensure_test_image
ensure_registry
log "ready: engine $(docker version -f '{{.Server.Version}}'), image $TEST_IMAGE, registry $REGISTRY_ADDR"
