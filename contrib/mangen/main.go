// Command mangen writes rowctl's man pages (section 1), one per command,
// from the same cobra tree as its --help: make install puts them under
// PREFIX/share/man/man1.
//
//	go run ./contrib/mangen DIR
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra/doc"

	"github.com/rowfs/rowfs/ctl"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mangen DIR")
		os.Exit(2)
	}
	if err := generate(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

func generate(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root := ctl.NewRootCommand(io.Discard)
	root.DisableAutoGenTag = true // no date: the pages are reproducible
	header := &doc.GenManHeader{Title: "ROWCTL", Section: "1", Source: "rowfs", Manual: "rowfs manual"}
	return doc.GenManTree(root, header, dir)
}
