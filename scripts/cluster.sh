#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, built from source, for `pytest -m cluster`
# and Helm installs of the chart. No prebuilt Kubernetes, kind node image or registry is
# reachable here, so:
#   - etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl
#     and helm are ONE program built from the Go module proxy (scripts/cluster/kube), CoreDNS
#     another (scripts/cluster/coredns), both cached under
#     $CACHE_ROOT/kube-<release>-<hash of their sources and Go>/;
#   - cluster DNS is CoreDNS on the node's address behind the kube-dns Service (10.96.0.10);
#   - the sandbox image is Kubernetes' own build/pause/linux/pause.c (from the same module),
#     compiled statically here;
#   - the container runtime is a containerd of its own (Debian's binary, its own config, root,
#     state and socket), runc, and the CNI bridge plugin on a bridge of its own (never Docker's
#     containerd, never docker0);
#   - images come from the Docker engine (`load`) or from registries on loopback over plain
#     HTTP: the test registries of scripts/ci-provision.sh (127.0.0.1:5000 and :5001) and the
#     cluster's own on :5002, which stands in for docker.io (no internet here) and serves
#     busybox:1.36 and oneoff-test/busybox:latest, built here from Debian's busybox-static;
#     any other docker.io name is "not found", as on Docker Hub.
#
#   scripts/cluster.sh up          build if needed, start what is not running, wait for the node
#                                  and the default service account; prints the admin kubeconfig
#   scripts/cluster.sh down        stop everything, remove its state (not the build cache)
#   scripts/cluster.sh load IMAGE  copy images from the Docker engine into the cluster
#   scripts/cluster.sh restart NAME...  stop those daemons (e.g. kube-apiserver, kubelet) and
#                                  bring the cluster up again: faults for tests
#   scripts/cluster.sh env         `export KUBECONFIG=... PATH=...` for kubectl and helm
#   scripts/cluster.sh status      what runs
#   scripts/cluster.sh build       only build (prints the binaries' directory)
# Logs go to stderr and $STATE/log/; only `up`, `build` and `env` print on stdout.
set -euo pipefail
# What the daemons started here create must be readable by a container's non-root user,
# whatever umask the caller had: containerd makes each container's / (the overlay's upper
# directory) with it, and a 077 there fails every non-root exec ("executable file not found").
umask 022

HERE="$(cd "$(dirname "$0")" && pwd)"
MODULE="$HERE/cluster/kube"
DNS_MODULE="$HERE/cluster/coredns"
CACHE_ROOT="${ONEOFF_CLUSTER_CACHE:-/var/cache/oneoff-cluster}"
STATE="${ONEOFF_CLUSTER_STATE:-/var/lib/oneoff-cluster}"
RUN="${ONEOFF_CLUSTER_RUN:-/run/oneoff-cluster}"
NODE_NAME="${ONEOFF_CLUSTER_NODE:-oneoff-node}"
NODE_IP="${ONEOFF_CLUSTER_NODE_IP:-10.231.0.1}"     # on a bridge of its own with no ports
NODE_IF=oneoff-node
POD_IF=oneoff-cni0
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24                             # Docker's is 172.17.0.0/16
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
API_PORT=6443
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800
PUBLIC_REGISTRY="${RUNNER_TEST_PUBLIC_REGISTRY:-127.0.0.1:5001}"
PRIVATE_REGISTRY="${RUNNER_TEST_REGISTRY:-127.0.0.1:5000}"
HUB="${ONEOFF_CLUSTER_HUB:-127.0.0.1:5002}"         # the cluster's docker.io
HUB_IMAGES=(library/busybox:1.36 oneoff-test/busybox:latest)
PAUSE_TAG=3.10.2
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_TAG"
CONTAINERD_SOCK="$RUN/containerd.sock"
PKI="$STATE/pki"
LOG="$STATE/log"
KUBECONFIG_ADMIN="$STATE/admin.kubeconfig"
DAEMONS=(registry containerd etcd kube-apiserver kube-controller-manager kube-scheduler coredns kubelet kube-proxy)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...
  local what=$1 seconds=$2 deadline; shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out after ${seconds}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# ---- build ---------------------------------------------------------------------------------

kube_release() { awk '$1 == "k8s.io/kubernetes" { print $2 }' "$MODULE/go.mod"; }

build_dir() {  # the cache directory of these sources, this Go and this pause version
  local hash
  hash=$( { cat "$MODULE"/go.mod "$MODULE"/go.sum "$MODULE"/*.go "$DNS_MODULE"/go.mod \
    "$DNS_MODULE"/go.sum "$DNS_MODULE"/*.go; go version; echo "$PAUSE_TAG"; } \
    | sha256sum | cut -c1-12)
  echo "$CACHE_ROOT/kube-$(kube_release)-$hash"
}

build() {
  local dir
  dir=$(build_dir)
  if [ -x "$dir/kube" ] && [ -x "$dir/coredns" ] && [ -f "$dir/pause.tar" ] \
      && [ -f "$dir/busybox.tar" ]; then
    echo "$dir"; return 0
  fi
  command -v go >/dev/null || die "needs Go (the module proxy builds the cluster)"
  ensure_packages
  mkdir -p "$dir"
  local started=$SECONDS
  log "building Kubernetes $(kube_release), etcd, helm and CoreDNS into $dir"
  go_build "$MODULE" "$dir/kube" "$(version_flags)"
  go_build "$DNS_MODULE" "$dir/coredns" ""
  [ -f "$dir/pause.tar" ] || build_pause "$dir"
  [ -f "$dir/busybox.tar" ] || build_busybox "$dir"
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy \
      kubectl helm; do
    ln -sfn kube "$dir/$name"
  done
  log "built in $((SECONDS - started)) s"
  echo "$dir"
}

go_build() {  # go_build MODULE OUTPUT LDFLAGS: static, stripped, without local paths
  [ -x "$2" ] && return 0
  (cd "$1" && CGO_ENABLED=0 GOFLAGS=-mod=readonly nice -n "${ONEOFF_CLUSTER_NICE:-10}" \
    go build -trimpath -ldflags="-s -w $3" -o "$2.new" .) >&2
  mv "$2.new" "$2"
}

version_flags() {  # what Kubernetes' and Helm's own builds stamp in (else: v0.0.0-master)
  local release minor helm pkg flags=""
  release=$(kube_release)
  minor=${release#v1.}; minor=${minor%%.*}
  helm=$(awk '$1 == "helm.sh/helm/v4" { print $2 }' "$MODULE/go.mod")
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$release -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean"
  done
  echo "$flags -X helm.sh/helm/v4/internal/version.version=$helm"
}

image_archive() {  # image_archive ROOTFS OUTPUT CONFIG TAGS: a one-layer docker-archive image
  local rootfs=$1 output=$2 config=$3 tags=$4 work diff digest
  work=$(mktemp -d)
  chmod 755 "$rootfs"  # mktemp's 0700; a root filesystem's / is 0755
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
  diff=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$config" "$diff" >"$work/config.json"
  digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/$digest.json"
  mkdir "$work/$diff" && mv "$work/layer.tar" "$work/$diff/layer.tar"
  printf '[{"Config":"%s.json","RepoTags":%s,"Layers":["%s/layer.tar"]}]' \
    "$digest" "$tags" "$diff" >"$work/manifest.json"
  tar -C "$work" -cf "$output" manifest.json "$digest.json" "$diff/layer.tar"
  rm -rf "$work"
}

build_pause() {  # build_pause DIR: pause.tar, Kubernetes' own build/pause/linux/pause.c
  local dir=$1 source rootfs
  source="$(cd "$MODULE" && go mod download -json k8s.io/kubernetes \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c"
  rootfs=$(mktemp -d)
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-oneoff" -o "$rootfs/pause" "$source"
  strip "$rootfs/pause"
  image_archive "$rootfs" "$dir/pause.tar" \
    '{"Entrypoint":["/pause"],"User":"65535:65535"}' "[\"$PAUSE_IMAGE\"]"
  rm -rf "$rootfs"
}

build_busybox() {  # build_busybox DIR: busybox.tar, Debian's busybox-static as a small image
  local dir=$1 rootfs applet
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $("$rootfs/bin/busybox" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  chmod 1777 "$rootfs/tmp"
  image_archive "$rootfs" "$dir/busybox.tar" '{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}' \
    "[\"$HUB/${HUB_IMAGES[0]}\"]"
  rm -rf "$rootfs"
}

# ---- host prerequisites --------------------------------------------------------------------

ensure_packages() {
  local missing=() pkg
  for pkg in containerd runc containernetworking-plugins iptables conntrack openssl gcc libc6-dev \
      busybox-static docker-registry curl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# `cmd | grep -q` under pipefail fails at random: grep exits at its first match and `cmd` dies
# of SIGPIPE. So grep reads a command's output from a here-string, here and in engine.sh.
ensure_network() {
  if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
    # A bridge with no ports: an address of the node's own that nothing outside can reach.
    ip link add "$NODE_IF" type bridge
  fi
  grep -q "inet $NODE_IP/" <<<"$(ip addr show dev "$NODE_IF")" \
    || ip addr add "$NODE_IP/32" dev "$NODE_IF"
  ip link set "$NODE_IF" up
  sysctl -qw net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true
}

# ---- certificates and configuration ---------------------------------------------------------

cert() {  # cert NAME CN [O] [SUBJECT_ALT_NAMES]: $PKI/NAME.{key,crt} signed by the cluster's CA
  local name=$1 cn=$2 org=${3:-} sans=${4:-} subject ext
  [ -f "$PKI/$name.crt" ] && return 0
  subject="/CN=$cn"
  [ -n "$org" ] && subject="/O=$org$subject"
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth,serverAuth"
  [ -n "$sans" ] && ext="$ext
subjectAltName=$sans"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subject" \
    -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$ext") -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

kubeconfig() {  # kubeconfig NAME: $STATE/NAME.kubeconfig, authenticated by $PKI/NAME.{crt,key}
  local name=$1 file="$STATE/$1.kubeconfig"
  [ -f "$file" ] && return 0
  touch "$file" && chmod 600 "$file"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: oneoff
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$name.crt")
    client-key-data: $(base64 -w0 "$PKI/$name.key")
contexts:
- name: $name@oneoff
  context: {cluster: oneoff, user: $name, namespace: default}
current-context: $name@oneoff
EOF
}

ensure_pki() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    log "making the cluster's CA and certificates"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=oneoff-cluster-ca" \
      -days 3650 -sha256 -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
  fi
  [ -f "$PKI/sa.key" ] || {
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  }
  cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert kubelet-serving "$NODE_NAME" "" "IP:$NODE_IP,DNS:$NODE_NAME"
  cert admin oneoff-admin system:masters
  cert kube-controller-manager system:kube-controller-manager
  cert kube-scheduler system:kube-scheduler
  cert kubelet "system:node:$NODE_NAME" system:nodes
  cert kube-proxy system:kube-proxy
  cert coredns system:coredns
  local name
  for name in admin kube-controller-manager kube-scheduler kubelet kube-proxy coredns; do
    kubeconfig "$name"
  done
}

write_configs() {
  mkdir -p "$STATE/containerd/certs.d" "$STATE/cni/net.d" "$STATE/kubelet" "$LOG" "$RUN"
  update "$STATE/containerd/config.toml" <<EOF
# A containerd of the cluster's own: Docker's (/run/containerd, /var/lib/containerd) is untouched.
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # No CAP_SYS_RESOURCE here: an oom_score_adj below containerd's own (the kubelet asks -998 for
  # sandboxes) fails runc ("can't get final child's PID from pipe"); it is raised to ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$STATE/containerd/certs.d"
EOF
  # The local registries speak plain HTTP; docker.io is the cluster's own (no internet here).
  registry_hosts "$PUBLIC_REGISTRY" "http://$PUBLIC_REGISTRY"
  registry_hosts "$PRIVATE_REGISTRY" "http://$PRIVATE_REGISTRY"
  registry_hosts docker.io "http://$HUB"
  mkdir -p "$STATE/registry"
  printf 'version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp: {addr: "%s"}\n' \
    "$STATE/registry/data" "$HUB" | update "$STATE/registry/config.yml"

  # Pods reach one another, Services and the node; no route leads off this machine.
  update "$STATE/cni/net.d/10-oneoff.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "oneoff",
  "plugins": [
    {
      "type": "bridge", "bridge": "$POD_IF", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}, {"dst": "$NODE_IP/32"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF

  update "$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host runs cgroup v1, which kubelet 1.35 and later refuse unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$DNS_SERVICE_IP]
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
failSwapOn: false
# The machine is shared and its disk may run low: no eviction or image GC on its account (an
# imported image cannot be pulled back).
evictionHard: {memory.available: 100Mi, nodefs.available: 512Mi, imagefs.available: 512Mi}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF

  update "$STATE/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/coredns.kubeconfig coredns@oneoff
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    loadbalance
}
EOF

  update "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
# The host's conntrack settings are left as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

registry_hosts() {  # registry_hosts NAME URL: containerd pulls NAME's images from URL
  mkdir -p "$STATE/containerd/certs.d/$1"
  printf 'server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n' \
    "$2" "$2" | update "$STATE/containerd/certs.d/$1/hosts.toml"
}

update() {  # update FILE: stdin becomes FILE unless FILE says that already (kube-proxy exits
  # whenever its configuration file is written)
  local new
  new=$(cat)
  [ -f "$1" ] && [ "$(cat "$1")" = "$new" ] && return 0
  printf '%s\n' "$new" >"$1"
}

# ---- processes -----------------------------------------------------------------------------

pid_of() {  # the pid of daemon NAME if it runs (its pid file names a live process of ours)
  local file="$RUN/$1.pid" pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -d "/proc/$pid" ] && grep -q -- "$STATE\|$RUN" <<<"$(tr '\0' ' ' <"/proc/$pid/cmdline")" \
    || return 1
  echo "$pid"
}

start() {  # start NAME COMMAND...: runs COMMAND in the background unless NAME already runs
  local name=$1; shift
  pid_of "$name" >/dev/null && return 0
  log "starting $name"
  setsid nohup "$@" >>"$LOG/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

stop() {  # stop NAME: SIGTERM, then SIGKILL after 20 s
  local pid
  pid=$(pid_of "$1") || { rm -f "$RUN/$1.pid"; return 0; }
  log "stopping $1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 40); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
  [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -f "$RUN/$1.pid"
}

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }
api_ready() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$NODE_IP:$API_PORT/readyz" >/dev/null
}

start_runtime() {
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd" 60 ctr --address "$CONTAINERD_SOCK" version
  grep -qx "$PAUSE_IMAGE" <<<"$(ctr_k8s images ls -q)" || {
    log "importing $PAUSE_IMAGE (Kubernetes' pause.c, built here)"
    ctr_k8s images import "$BIN/pause.tar" >/dev/null
  }
}

start_control_plane() {
  start etcd "$BIN/etcd" --name "$NODE_NAME" --data-dir "$STATE/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "$NODE_NAME=http://$ETCD_PEER" \
    --unsafe-no-fsync --log-level warn
  wait_for "etcd" 60 curl -sf "http://$ETCD_CLIENT/health"
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://$ETCD_CLIENT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --profiling=false
  wait_for "kube-apiserver" 120 api_ready
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_dns() {  # CoreDNS on the node, and the kube-dns Service in front of it
  kubectl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $DNS_SERVICE_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: oneoff-cluster
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
  start coredns "$BIN/coredns" -conf "$STATE/Corefile"
  wait_for "CoreDNS" 60 curl -sf http://127.0.0.1:18181/ready
}

save_sysctls() {
  # The kubelet sets these kernel tunables as every kubelet does; `down` puts them back.
  [ -f "$STATE/sysctls.saved" ] && return 0
  sysctl vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes | sed 's/ = /=/' >"$STATE/sysctls.saved"
}

start_node() {
  save_sysctls
  start kubelet "$BIN/kubelet" --config "$STATE/kubelet/config.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$STATE/kubelet" \
    --cert-dir "$STATE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
}

wait_for_cluster() {
  wait_for "the node $NODE_NAME to register" 120 kubectl get node "$NODE_NAME"
  kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=180s >/dev/null \
    || { tail -20 "$LOG/kubelet.log" >&2; die "the node did not become Ready"; }
  wait_for "the default service account" 120 kubectl -n default get serviceaccount default
}

# ---- images --------------------------------------------------------------------------------

start_hub() {  # the cluster's docker.io, holding the images of HUB_IMAGES
  start registry docker-registry serve "$STATE/registry/config.yml"
  wait_for "the cluster's registry on $HUB" 30 curl -sf "http://$HUB/v2/"
  local image
  for image in "${HUB_IMAGES[@]}"; do
    curl -sf -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$HUB/v2/${image%:*}/manifests/${image##*:}" && continue
    grep -qx "$HUB/${HUB_IMAGES[0]}" <<<"$(ctr_k8s images ls -q)" \
      || ctr_k8s images import "$BIN/busybox.tar" >/dev/null
    log "pushing $image to $HUB"
    ctr_k8s images push --plain-http "$HUB/$image" "$HUB/${HUB_IMAGES[0]}" >/dev/null
  done
}

load() {  # load IMAGE...: from the Docker engine into the cluster's containerd (k8s.io)
  local image
  for image in "$@"; do
    log "loading $image"
    docker save "$image" | ctr_k8s images import - >/dev/null
  done
}


# ---- commands ------------------------------------------------------------------------------

up() {
  [ "$(id -u)" = 0 ] || die "needs root (containerd, kubelet, iptables)"
  ensure_packages
  BIN=$(build)
  ensure_network
  ensure_pki
  write_configs
  mkdir -p "$STATE/bin"
  for name in kubectl helm; do ln -sfn "$BIN/$name" "$STATE/bin/$name"; done
  start_runtime
  start_hub
  start_control_plane
  start_dns
  start_node
  wait_for_cluster
  log "ready: Kubernetes $(kube_release) on $NODE_NAME ($NODE_IP); kubectl and helm in $STATE/bin"
  echo "$KUBECONFIG_ADMIN"
}

down() {
  [ "$(id -u)" = 0 ] || die "needs root"
  BIN=$(build_dir)
  stop kube-proxy
  stop kubelet
  if pid_of containerd >/dev/null; then
    [ -x "$BIN/kube" ] && "$BIN/kube" remove-pods "unix://$CONTAINERD_SOCK" || true
  fi
  stop coredns
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  stop containerd
  stop registry
  kill_shims
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  remove_firewall_chains
  unmount_under "$STATE" "$RUN"
  remove_cgroups
  restore_sysctls
  ip link del "$POD_IF" 2>/dev/null || true
  ip link del "$NODE_IF" 2>/dev/null || true
  rm -rf "$STATE" "$RUN"
  log "stopped; state removed (the build cache in $CACHE_ROOT stays)"
}

kill_shims() {  # the runc shims our containerd started (their command lines name our socket)
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
}

remove_firewall_chains() {  # what the CNI plugins and the kubelet left: chains named for them
  local table chain
  for table in filter nat mangle; do
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(CNI-|KUBE-)/ { print $2 }'); do
      iptables -t "$table" -S | awk -v c="$chain" '$1 == "-A" && / -j / { for (i = 1; i <= NF; i++) if ($i == "-j" && $(i+1) == c) print }' \
        | sed 's/^-A /-D /' | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(CNI-|KUBE-)/ { print $2 }'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

unmount_under() {  # every mount below the given directories, deepest first
  local dir
  for dir in "$@"; do
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
  done
}

remove_cgroups() {  # the kubelet's cgroups (kubepods) in every v1 hierarchy, deepest first
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -d "$hierarchy/kubepods" ] || continue
    find "$hierarchy/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

restore_sysctls() {
  [ -f "$STATE/sysctls.saved" ] || return 0
  xargs sysctl -q -w <"$STATE/sysctls.saved" >/dev/null || true
}

status() {
  local name pid
  for name in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$name"); then echo "$name running (pid $pid)"; else echo "$name stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  build) build ;;
  load) shift; load "$@" ;;
  restart)
    shift
    for name in "$@"; do
      [[ " ${DAEMONS[*]} " == *" $name "* ]] || die "no daemon $name (${DAEMONS[*]})"
      stop "$name"
    done
    up ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_ADMIN PATH=$STATE/bin:\$PATH" ;;
  status) status ;;
  *) echo "usage: $0 up|down|load IMAGE...|restart NAME...|env|status|build" >&2; exit 2 ;;
esac
