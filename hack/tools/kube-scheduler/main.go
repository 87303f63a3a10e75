// Command kube-scheduler is the Kubernetes scheduler built from the Go module proxy, for the local cluster
// (`make cluster`, the e2e tests): it places each tier's pods on the fake GPU nodes by their requests,
// nodeSelector and tolerations, as on a real cluster. Built like hack/tools/kube-apiserver (same replace
// list in go.mod); the body mirrors k8s.io/kubernetes/cmd/kube-scheduler/scheduler.go.
// Pinned in the Makefile (KUBERNETES_VERSION) and in go.mod here: bump both.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
