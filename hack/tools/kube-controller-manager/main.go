// Command kube-controller-manager is the Kubernetes controller manager built from the Go module proxy, for
// the local cluster (`make cluster`, the e2e tests): Endpoints/EndpointSlices for the RayService's Services,
// garbage collection of what KubeRay owns, namespace deletion. Built like hack/tools/kube-apiserver (same
// replace list in go.mod); the body mirrors k8s.io/kubernetes/cmd/kube-controller-manager/controller-manager.go.
// Pinned in the Makefile (KUBERNETES_VERSION) and in go.mod here: bump both.
package main

import (
	"os"
	_ "time/tzdata" // for CronJob Time Zone support

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
