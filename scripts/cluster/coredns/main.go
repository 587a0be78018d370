// Command coredns is CoreDNS with the plugins a single-node cluster's DNS needs (the
// kubernetes plugin for cluster.local, forward for the rest), run on the node by
// scripts/cluster.sh behind the kube-dns Service. Its own module: CoreDNS's dependencies would
// move those of Kubernetes (scripts/cluster/kube) and cost that build its cache.
package main

import (
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
