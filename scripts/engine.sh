#!/usr/bin/env bash
# A current Docker Engine beside the host's, for running the engine tests against it:
#   scripts/engine.sh up      build (once per version) and start it; prints its DOCKER_HOST
#   scripts/engine.sh stop    stop it, keeping its data
#   scripts/engine.sh down    stop it and remove its data and its bridge (built binaries stay)
#   scripts/engine.sh env     print its DOCKER_HOST (whether or not it runs)
#   scripts/engine.sh build   only build (or find) its binaries; prints their directory
#
# dockerd, docker-proxy, containerd and its runc shim are built from the Go module proxy by the
# module in scripts/engine, runc by scripts/engine/runc (their go.mod files pin the versions);
# runsc (gVisor) and docker-init are Debian's. The binaries are cached under $ENGINE_CACHE, keyed
# by those versions and the go.sum files, so a second `up` only starts the engine. Debian's runc
# (1.1.5) cannot start this engine's containers: it gives each one a time namespace, which runc
# knows from 1.2 on.
#
# It shares nothing with the host's engine: its own data root, exec root, pidfile, socket and
# config file; its own containerd (started here with a config of its own, never one dockerd would
# find at /run/containerd/containerd.sock); its own bridge, address pool for user-defined networks
# and cgroup parent. It never touches the host's firewall (--iptables=false, --ip6tables=false,
# --ip-masq=false: the tests only reach 127.0.0.1) nor docker0 (see `start`). Like every
# containerd on the machine, its shims put their sockets, named by a hash of this containerd's
# socket path, in /run/containerd/s while they run.
#
# ENGINE_IMAGE_STORE=graphdriver (at `up`, after a `stop`) runs it on overlay2 instead of the
# containerd image store.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MODULE="$HERE/engine"
CACHE="${ENGINE_CACHE:-/var/cache/oneoff-engine}"
STATE="${ENGINE_STATE:-/var/lib/oneoff-engine}"
RUN="${ENGINE_RUN:-/run/oneoff-engine}"
BRIDGE="${ENGINE_BRIDGE:-oneoff-eng0}"
BRIDGE_ADDRESS="${ENGINE_BRIDGE_ADDRESS:-10.238.0.1/24}"
ADDRESS_POOL="${ENGINE_ADDRESS_POOL:-10.239.0.0/16}"
TEST_IMAGE="${RUNNER_TEST_IMAGE:-oneoff-test/busybox:latest}"
# `containerd`: the containerd image store, Docker 29's default on a new install; `graphdriver`:
# overlay2, what an engine upgraded from 28 or older keeps.
IMAGE_STORE="${ENGINE_IMAGE_STORE:-containerd}"
NICE="${ENGINE_NICE:-10}"  # builds yield to the tests others run on the machine
SOCKET="$RUN/docker.sock"
PIDFILE="$RUN/dockerd.pid"
DATA_ROOT="$STATE/data"
EXEC_ROOT="$RUN/exec"
LOG="$STATE/dockerd.log"
CONTAINERD_SOCKET="$RUN/containerd/containerd.sock"
CONTAINERD_PIDFILE="$RUN/containerd.pid"
export DOCKER_HOST="unix://$SOCKET"
command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"

log() { printf '[engine] %s\n' "$*" >&2; }

required() {  # required MODULE [DIR]: its version in the go.mod of that build module
  awk -v module="$1" '$1 == module { print $2; exit }' "${2:-$MODULE}/go.mod"
}

MOBY_VERSION="$(required github.com/moby/moby/v2)"
CONTAINERD_VERSION="$(required github.com/containerd/containerd/v2)"
RUNC_VERSION="$(required github.com/opencontainers/runc "$MODULE/runc")"
# What the engine calls itself: the Docker release this moby module version precedes
# (releases/versions.yaml of v2.0.0-beta.24: last 29.8.0, next 29.8.1).
ENGINE_VERSION="${ENGINE_VERSION:-29.8.1-dev}"

bin_dir() {
  local digest
  digest=$( (cat "$MODULE"/go.* "$MODULE"/runc/go.*; echo "$ENGINE_VERSION") | sha256sum)
  printf '%s/moby-%s_containerd-%s_runc-%s_%s_%s\n' "$CACHE" "$MOBY_VERSION" \
    "$CONTAINERD_VERSION" "$RUNC_VERSION" "$(go env GOVERSION)" "${digest:0:12}"
}

build() {  # the binaries into the cache, unless they are there already
  local bin=$1 tmp
  [ -f "$bin/.complete" ] && return 0
  log "building dockerd $ENGINE_VERSION (moby $MOBY_VERSION), containerd $CONTAINERD_VERSION," \
    "runc $RUNC_VERSION"
  apt_install gcc libc6-dev pkg-config libseccomp-dev  # cgo; runc's seccomp
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
  local moby=github.com/moby/moby/v2 containerd=github.com/containerd/containerd/v2
  (cd "$MODULE" && nice -n "$NICE" go build -trimpath -o "$tmp/" -ldflags "\
      -X $moby/dockerversion.Version=$ENGINE_VERSION \
      -X $moby/dockerversion.GitCommit=$MOBY_VERSION \
      -X $containerd/version.Version=${CONTAINERD_VERSION#v} \
      -X $containerd/version.Revision=$CONTAINERD_VERSION" \
    "$moby/cmd/dockerd" "$moby/cmd/docker-proxy" \
    "$containerd/cmd/containerd" "$containerd/cmd/containerd-shim-runc-v2")
  (cd "$MODULE/runc" && nice -n "$NICE" go build -trimpath -tags seccomp -o "$tmp/" -ldflags "\
      -X main.version=${RUNC_VERSION#v} -X main.gitCommit=$RUNC_VERSION" \
    github.com/opencontainers/runc)
  touch "$tmp/.complete"
  rm -rf "$bin"
  mv "$tmp" "$bin"
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
}

running() {
  curl -sf --max-time 5 --unix-socket "$SOCKET" http://engine/_ping >/dev/null 2>&1
}

ensure_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  local network
  network=$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_interface(sys.argv[1]).network)' \
    "$BRIDGE_ADDRESS")
  if [ -n "$(ip -4 route show to match "$network" | grep -v '^default')" ] \
      || [ -n "$(ip -4 route show root "$network")" ]; then
    log "the bridge's subnet $network overlaps a route of this machine; set ENGINE_BRIDGE_ADDRESS"
    exit 1
  fi
  log "creating the bridge $BRIDGE ($BRIDGE_ADDRESS)"
  ip link add name "$BRIDGE" type bridge
  ip addr add "$BRIDGE_ADDRESS" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

write_config() {  # the engine's daemon.json: gVisor as runtime `runsc`, as on the host's engine
  local snapshotter
  case "$IMAGE_STORE" in
    containerd) snapshotter=true ;;
    graphdriver) snapshotter=false ;;
    *) log "ENGINE_IMAGE_STORE is containerd or graphdriver, not $IMAGE_STORE"; exit 2 ;;
  esac
  cat >"$RUN/daemon.json" <<EOF
{
  "features": {"containerd-snapshotter": $snapshotter},
  "runtimes": {
    "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace", "--network=none"]}
  }
}
EOF
}

wait_for() {  # wait_for PID LOG COMMAND...: until COMMAND succeeds, while PID lives
  local pid=$1 log=$2; shift 2
  for _ in $(seq 1 300); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  log "it did not start; the end of $log:"
  tail -n 40 "$log" >&2
  exit 1
}

start_containerd() {  # the config dockerd gives a containerd it manages, with paths of its own
  local bin=$1
  cat >"$RUN/containerd.toml" <<EOF
version = 3
root = "$STATE/containerd"
state = "$RUN/containerd/state"
imports = []
disabled_plugins = [
  "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
  "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri",
]

[grpc]
  address = "$CONTAINERD_SOCKET"

[ttrpc]
  address = "$CONTAINERD_SOCKET.ttrpc"

[debug]
  address = "$RUN/containerd/debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd-opt"
EOF
  mkdir -p "$RUN/containerd"
  # Its shims, and the runc they run, come first in PATH.
  PATH="$bin:$PATH" setsid nohup "$bin/containerd" --config "$RUN/containerd.toml" \
    </dev/null >>"$STATE/containerd.log" 2>&1 &
  echo $! >"$CONTAINERD_PIDFILE"
  wait_for "$!" "$STATE/containerd.log" test -S "$CONTAINERD_SOCKET"
}

host_bridge() {  # the index of the host engine's docker0, if there is one
  cat /sys/class/net/docker0/ifindex 2>/dev/null || true
}

start() {
  local bin=$1 docker0
  mkdir -p "$STATE" "$DATA_ROOT" "$RUN" "$EXEC_ROOT"
  ensure_bridge
  write_config
  # A dockerd that starts with a default address pool on a data root whose network store holds
  # its default `bridge` network deletes the interface named docker0 (moby's configureNetworking,
  # "Clear stale bridge network": the name is fixed, whatever --bridge says), which is the host
  # engine's. So every start begins without that store; the engine makes its networks again.
  rm -f "$DATA_ROOT/network/files/local-kv.db"
  docker0=$(host_bridge)
  if ! our_pid "$CONTAINERD_PIDFILE" containerd >/dev/null; then start_containerd "$bin"; fi
  log "starting dockerd $ENGINE_VERSION on $DOCKER_HOST (log: $LOG)"
  # Its own runc and docker-proxy come first in PATH; runsc and docker-init are Debian's.
  PATH="$bin:$PATH" setsid nohup "$bin/dockerd" \
    --config-file "$RUN/daemon.json" \
    --host "$DOCKER_HOST" \
    --data-root "$DATA_ROOT" \
    --exec-root "$EXEC_ROOT" \
    --pidfile "$PIDFILE" \
    --containerd "$CONTAINERD_SOCKET" \
    --bridge "$BRIDGE" \
    --default-address-pool "base=$ADDRESS_POOL,size=24" \
    --iptables=false --ip6tables=false --ip-masq=false \
    --cgroup-parent /oneoff-engine \
    --userland-proxy-path "$bin/docker-proxy" \
    </dev/null >>"$LOG" 2>&1 &
  wait_for "$!" "$LOG" running
  if [ "$(host_bridge)" != "$docker0" ]; then
    log "docker0 changed while this engine started: stopping it; the host engine needs docker0"
    stop
    exit 1
  fi
}

ensure_test_image() {  # the image scripts/ci-provision.sh makes, made the same way
  docker image inspect "$TEST_IMAGE" >/dev/null 2>&1 && return 0
  apt_install busybox-static
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  log "importing $TEST_IMAGE"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$TEST_IMAGE" >/dev/null
  rm -rf "$root"
}

up() {
  local bin
  bin=$(bin_dir)
  if ! running; then
    apt_install runsc curl
    command -v docker >/dev/null 2>&1 || apt_install docker.io  # the client only
    build "$bin"
    start "$bin"
  fi
  ensure_test_image
  log "ready: engine $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})')," \
    "image store: $(docker info -f '{{.Driver}}')"
  printf '%s\n' "$DOCKER_HOST"
}

our_pid() {  # our_pid PIDFILE NAME: the pid in it, if that process is still NAME
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && printf '%s\n' "$pid"
}

wait_gone() {  # wait_gone PID SECONDS
  for _ in $(seq 1 "$(($2 * 5))"); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.2
  done
  return 1
}

stop() {
  local pid containerd shim
  if pid=$(our_pid "$PIDFILE" dockerd); then
    log "stopping dockerd ($pid)"
    kill -TERM "$pid"
    wait_gone "$pid" 90 || { log "dockerd did not stop: killed"; kill -KILL "$pid"; }
  fi
  if containerd=$(our_pid "$CONTAINERD_PIDFILE" containerd); then
    log "stopping containerd ($containerd)"
    kill -TERM "$containerd"
    wait_gone "$containerd" 30 || kill -KILL "$containerd"
  fi
  # Shims an engine that did not stop cleanly leaves (each started with this containerd's socket,
  # which no other process names).
  for shim in $(pgrep -f -- "-address $CONTAINERD_SOCKET" || true); do
    kill -KILL "$shim"
  done
  # Mounts it left (reverse order: innermost first); none may remain before a removal.
  { findmnt -rn -o TARGET | grep -E "^($STATE|$RUN)/" || true; } | sort -r \
    | while read -r target; do umount -l "$target" || true; done
  rm -f "$SOCKET" "$PIDFILE" "$CONTAINERD_PIDFILE"
}

down() {
  stop
  if grep -qE "^($STATE|$RUN)/" <<<"$(findmnt -rn -o TARGET)"; then  # not a pipe: see cluster.sh
    log "mounts remain under $STATE or $RUN; not removing them"
    exit 1
  fi
  rm -rf --one-file-system "$STATE" "$RUN"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  rmdir /sys/fs/cgroup/*/oneoff-engine 2>/dev/null || true  # its cgroup parent, once empty
  log "stopped; its state is removed (built binaries stay in $CACHE)"
}

case "${1:-}" in
  up) up ;;
  stop) stop ;;
  down) down ;;
  env) printf '%s\n' "$DOCKER_HOST" ;;
  build) build "$(bin_dir)" && bin_dir ;;
  *) echo "usage: $0 up|stop|down|env|build" >&2; exit 2 ;;
esac
