// Command kube-apiserver is the Kubernetes API server built from the Go module proxy, for the local
// control plane of the tests. k8s.io/kubernetes replaces its staging modules with ./staging paths, so
// `go install` of it fails; this wrapper requires k8s.io/kubernetes and points every staging module at
// its published v0.x.y twin (go.mod). The body mirrors k8s.io/kubernetes/cmd/kube-apiserver/apiserver.go.
// Pinned in the Makefile (KUBERNETES_VERSION) and in go.mod here: bump both.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
