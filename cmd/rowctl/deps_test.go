package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection enforces cmd → daemon/ctl → fs → rowengine →
// blockmap, and which packages may link Badger, go-fuse, go-ceph and minio-go.
//
// The RBD backend's tags are on, so go-ceph is in the graph.
func TestDependencyDirection(t *testing.T) {
	const tags = "ceph,pacific"
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-tags", tags, "-deps", "github.com/rowfs/rowfs/"+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	forbidden := map[string][]string{
		"cmd/rowctl": {"badger", "go-fuse", "go-ceph", "rowfs/rowengine", "rowfs/fs", "rowfs/daemon", "rowfs/blockmap"},
		"ctl/api":    {"github.com/"},
		"blockmap":   {"rowfs/rowengine", "rowfs/fs", "rowfs/daemon", "rowfs/ctl", "go-fuse", "go-ceph"},
		"rowengine":  {"go-fuse", "go-ceph", "rowfs/fs", "rowfs/daemon", "rowfs/ctl"},
		"fs":         {"rowfs/daemon", "rowfs/ctl", "go-ceph"},
		// Backups read volumes through interfaces: no pool, FUSE or Ceph code.
		"rowengine/backup": {"badger", "go-fuse", "go-ceph", "rowfs/fs", "rowfs/daemon", "rowfs/ctl", "rowfs/blockmap"},
	}
	for pkg, bad := range forbidden {
		for _, dep := range deps(pkg) {
			for _, b := range bad {
				if strings.Contains(dep, b) && !strings.HasSuffix(dep, "rowfs/"+pkg) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
	// Only blockmap imports Badger directly.
	out, err := exec.Command("go", "list", "-tags", tags, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "github.com/rowfs/rowfs/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if strings.Contains(imp, "dgraph-io/badger") && !strings.HasSuffix(f[0], "/blockmap") {
				t.Errorf("%s imports Badger; only blockmap may", f[0])
			}
			if strings.Contains(imp, "minio/minio-go") && !strings.HasSuffix(f[0], "/rowengine/backup") {
				t.Errorf("%s imports minio-go; only rowengine/backup may", f[0])
			}
			if strings.Contains(imp, "ceph/go-ceph") && !strings.HasSuffix(f[0], "/rowengine/rbd") {
				t.Errorf("%s imports go-ceph; only rowengine/rbd may", f[0])
			}
			inFS := strings.HasSuffix(f[0], "rowfs/fs") || strings.Contains(f[0], "rowfs/fs/") // fs/faultfs, its test filesystem
			if strings.Contains(imp, "hanwen/go-fuse") && !inFS && !strings.HasSuffix(f[0], "/daemon") && !strings.Contains(f[0], "/bench") {
				t.Errorf("%s imports go-fuse; only fs (and fs/faultfs) and daemon may", f[0])
			}
		}
	}
}
