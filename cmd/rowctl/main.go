// Command rowctl drives rowfsd over its control socket.
package main

import (
	"os"

	"github.com/rowfs/rowfs/ctl"
)

func main() {
	os.Exit(ctl.Main(os.Args[1:], os.Stdout, os.Stderr))
}
