package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A page per command, with the flags --help shows.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := generate(dir); err != nil {
		t.Fatal(err)
	}
	for page, want := range map[string]string{
		"rowctl.1":                   "snapshot",
		"rowctl-snapshot-rollback.1": "yes",
		"rowctl-job-list.1":          "watch",
		"rowctl-volume-create.1":     "size",
	} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("%s: %v", page, err)
			continue
		}
		if !strings.Contains(string(b), want) || !strings.Contains(string(b), ".TH \"ROWCTL\" \"1\"") {
			t.Errorf("%s lacks %q or a man header:\n%.300s", page, want, b)
		}
	}
}
