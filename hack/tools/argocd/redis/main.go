// Command redis is an in-memory Redis server (miniredis, the Redis Argo CD's own tests run against, at the
// version argo-cd/v3's go.mod pins) for the Argo CD controllers and repo-server of the tests and of
// `make argocd-local`. It builds from the Go module proxy with no root and no system package, unlike a
// redis-server from apt. It serves until SIGINT or SIGTERM.
//
//	redis --addr 127.0.0.1:6379
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alicebob/miniredis/v2"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "address to listen on")
	flag.Parse()

	server := miniredis.NewMiniRedis()
	if err := server.StartAddr(*addr); err != nil {
		fmt.Fprintf(os.Stderr, "redis: cannot listen on %s: %v\n", *addr, err)
		os.Exit(1)
	}
	fmt.Printf("redis (miniredis) listening on %s\n", server.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	server.Close()
}
