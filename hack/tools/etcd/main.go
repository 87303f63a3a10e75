// Command etcd is the etcd server built from the Go module proxy. go.etcd.io/etcd/server/v3 carries
// replace directives, so `go install` of it fails; this wrapper module requires it like any library.
// Pinned in the Makefile (ETCD_VERSION) and in go.mod here: bump both.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
