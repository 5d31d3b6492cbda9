package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigFileSetsEveryField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rowfsd.toml")
	os.WriteFile(path, []byte(`
pool = "/p"
mount = "/m"
socket = "/s.sock"
socket_group = "root"
allow_file_shrink = true
snapshot_before_resize = false
snapshot_before_rollback = true
block_size = "16K"
capacity = "2G"
allow_other = false
log_level = "debug"
debug_fuse = true
allowed_uids = [107]
allowed_gids = [108, 109]
metadata_reserve = "16M"
pprof = "127.0.0.1:6060"
memory_limit = "256M"
`), 0o644)
	c, err := LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c.EnsureDefaults()
	if c.Pool != "/p" || c.Mount != "/m" || c.Socket != "/s.sock" || c.SocketGroup != "root" || !c.AllowFileShrink ||
		c.SnapshotBeforeResize == nil || *c.SnapshotBeforeResize || c.SnapshotBeforeRollback == nil || !*c.SnapshotBeforeRollback || c.SnapshotBeforeReset != nil || c.BlockSize != "16K" ||
		c.Capacity != "2G" || *c.AllowOther || c.LogLevel != "debug" || !c.DebugFUSE ||
		len(c.AllowedUIDs) != 1 || len(c.AllowedGIDs) != 2 || c.MetadataReserve != "16M" || c.Pprof != "127.0.0.1:6060" || c.MemoryLimit != "256M" {
		t.Fatalf("config not fully read: %+v", c)
	}
	opts, err := c.engineOptions(slog.Default())
	if err != nil || opts.BlockSize != 16<<10 || opts.Capacity != 2<<30 || opts.MetadataReserve != 16<<20 {
		t.Fatalf("engine options %+v, %v", opts, err)
	}
}

func TestConfigRefusesUnknownKeysAndBadValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rowfsd.toml")
	os.WriteFile(path, []byte("pool = \"/p\"\nblok_size = \"4K\"\n"), 0o644)
	if _, err := LoadConfigFile(path); err == nil || !strings.Contains(err.Error(), "blok_size") {
		t.Fatalf("unknown key: %v", err)
	}
	c := Config{Pool: "/p", Mount: "/m", BlockSize: "3K", Capacity: "lots", LogLevel: "loud", MetadataReserve: "x", Pprof: "0.0.0.0:6060", MemoryLimit: "1K",
		SocketGroup: "no-such-group-here"}
	_, err := c.engineOptions(slog.Default())
	for _, want := range []string{"block size", "capacity", "log level", "metadata reserve", "not a loopback address", "memory limit", `socket group "no-such-group-here"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad %s not reported: %v", want, err)
		}
	}
	c = Config{}
	c.EnsureDefaults()
	if _, err := c.engineOptions(slog.Default()); err == nil || !strings.Contains(err.Error(), "--pool") || !strings.Contains(err.Error(), "--mount") {
		t.Fatalf("missing pool and mount not reported: %v", err)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/mnt/my\040disks`); got != "/mnt/my disks" {
		t.Fatalf("got %q", got)
	}
}

func TestMemoryLimitSettings(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "off": 0, "OFF": 0, "256M": 256 << 20} {
		if got, err := parseMemoryLimit(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"auto", "16M", "lots", "-5G"} {
		if _, err := parseMemoryLimit(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
