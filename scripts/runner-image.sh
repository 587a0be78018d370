#!/usr/bin/env bash
# Build the runner's image, oneoff-runner:dev, on a machine that reaches no container registry:
#   1. a base image of our own, oneoff-base/python:3.11: a minimal Debian bookworm made with
#      debootstrap (python3 3.11, pip, venv), imported with `docker import`; it stands in for
#      python:3.11-slim, which comes from Docker Hub;
#   2. the project's Dockerfile built on it (`--build-arg BASE_IMAGE=...`; the Dockerfile's own
#      default stays python:3.11-slim for everyone else). The base trusts the machine's own
#      certificate authorities (/usr/local/share/ca-certificates: PyPI may be reached through
#      a proxy that re-signs TLS), so pip and uv in the build reach PyPI as the host does.
# Each step is skipped when its image is there already (RUNNER_IMAGE_REBUILD=1 rebuilds the
# runner image). Logs go to stderr; the image's name is printed on stdout.
#
#   scripts/runner-image.sh            then: scripts/cluster.sh load oneoff-runner:dev
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${RUNNER_BASE_IMAGE:-oneoff-base/python:3.11}"
IMAGE="${RUNNER_IMAGE:-oneoff-runner:dev}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm  # its python3 is 3.11, as python:3.11-slim's

log() { printf '[runner-image] %s\n' "$*" >&2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  local root
  root=$(mktemp -d /var/tmp/oneoff-base.XXXXXX)
  trap 'rm -rf "$root"' RETURN
  log "debootstrap $SUITE into $root (python3, pip, venv)"
  nice debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -30 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  # What python:3.11-slim offers that Debian's python3 does not by default: a `python`, and pip
  # allowed to install into the system interpreter (no PEP 668 marker).
  ln -sf python3 "$root/usr/bin/python"
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  # The machine's own certificate authorities (here, the one of the proxy that PyPI is reached
  # through): builds on this base (pip, uv) trust what the machine trusts.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*
  log "importing $BASE_IMAGE"
  chmod 755 "$root"  # mktemp's 0700; a root filesystem's / is 0755
  tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
}

have_image "$BASE_IMAGE" || build_base
if [ "${RUNNER_IMAGE_REBUILD:-0}" = 1 ] || ! have_image "$IMAGE"; then
  log "building $IMAGE on $BASE_IMAGE"
  DOCKER_BUILDKIT=0 nice docker build -q --force-rm --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" . >&2
fi
echo "$IMAGE"
