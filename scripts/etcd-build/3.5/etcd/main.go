// The etcd server, as etcd's own main.go starts it: etcdctl and etcdutl
// are built from their modules' main packages (the tool lines of go.mod),
// the server from this one, which etcd keeps in its repository's root
// module instead.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
