//go:build !cgo || !(pacific || quincy || reef || squid || tentacle || umbrella)

// Command holder needs go-ceph: build it with -tags pacific (see rbd/goceph).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("FAIL holder built without Ceph support: build with -tags pacific")
	os.Exit(1)
}
