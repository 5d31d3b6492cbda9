package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// freeLoopbackAddr is a TCP address on 127.0.0.1 that was free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metricValue finds one sample in a Prometheus text exposition (0 if absent).
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

// TestMetricsDuringQemuIO: /metrics, scraped around a qemu-io workload,
// counts exactly the bytes written and read, promtool's linter accepts
// it, the pool's state is there, and the metrics address refuses changes.
func TestMetricsDuringQemuIO(t *testing.T) {
	requireE2E(t, "qemu-io", "promtool")
	e := newEnv(t)
	addr := freeLoopbackAddr(t)
	e.start("--metrics", addr)
	mustRowctl(t, e.sock, "volume", "create", "vm1", "--size", "64M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm1@s1")
	scrape := func() string {
		code, body := httpGet(t, "http://"+addr+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d %s", code, body)
		}
		return body
	}
	written := `rowfs_volume_io_bytes_total{op="write",volume="vm1"}`
	read := `rowfs_volume_io_bytes_total{op="read",volume="vm1"}`
	before := scrape()
	file := filepath.Join(e.mnt, "vm1")
	qemuIO(t, file, "none", "write -P 0x5a 0 3M", "write -P 0x33 10M 64k", "write -P 0x44 20M 4k", "read -P 0x5a 0 1M")
	after := scrape()
	if got, want := metricValue(t, after, written)-metricValue(t, before, written), float64(3<<20+64<<10+4<<10); got != want {
		t.Fatalf("%s grew by %.0f, want %.0f", written, got, want)
	}
	if got := metricValue(t, after, read) - metricValue(t, before, read); got < 1<<20 {
		t.Fatalf("%s grew by %.0f, want at least 1 MiB", read, got)
	}
	for _, series := range []string{
		`rowfs_volume_io_duration_seconds_count{op="write",volume="vm1"}`,
		`rowfs_volume_logical_bytes{backend="row",volume="vm1"}`,
		`rowfs_volume_snapshots{backend="row",volume="vm1"}`,
		`rowfs_volume_chain_depth{backend="row",volume="vm1"}`,
		`rowfs_pool_free_bytes`, `rowfs_pool_capacity_bytes`,
		`rowfs_commits_total{result="ok"}`, `rowfs_commit_duration_seconds_count`,
	} {
		if metricValue(t, after, series) <= 0 {
			t.Errorf("%s missing or zero in\n%s", series, after)
		}
	}
	// The 4 KiB write is one sector of a block of zeros: it holds 4 KiB.
	if v := metricValue(t, after, `rowfs_volume_allocated_bytes{backend="row",volume="vm1"}`); v != float64(3<<20+64<<10+4<<10) {
		t.Errorf("allocated bytes %.0f, want the 3 MiB, the 64 KiB block and the 4 KiB sector written since s1", v)
	}
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = strings.NewReader(after)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	// A volume's series go with it.
	mustRowctl(t, e.sock, "volume", "delete", "vm1", "--force")
	if gone := scrape(); strings.Contains(gone, `volume="vm1"`) {
		t.Fatalf("series of a deleted volume remain")
	}
	// Read-only: the metrics address serves the API's GETs and nothing else.
	resp, err := http.Post("http://"+addr+api.PathVolumes, "application/json", strings.NewReader(`{"name":"x","size":1048576}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST on the metrics address: %d, want 405", resp.StatusCode)
	}
}

// TestMetricsRefusesRemoteAddress: a non-loopback metrics address is a
// config error before anything is created, unless allowed.
func TestMetricsRefusesRemoteAddress(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	if d, err := e.tryStart(nil, "--metrics", "0.0.0.0:0"); err == nil || !strings.Contains(d.log.String(), "metrics_allow_remote") {
		t.Fatalf("a remote metrics address was not refused: %v\n%s", err, d.log)
	}
	if _, err := os.Stat(e.pool); !os.IsNotExist(err) {
		t.Fatalf("the refused start created the pool: %v", err)
	}
}

// TestWebPageInChromium: the page, loaded in headless Chromium against a
// daemon with a tree of snapshots (a branch, a clone, a group, automatic
// snapshots), shows every node and the capacity chart; the screenshot is
// kept in the test's artifact directory.
func TestWebPageInChromium(t *testing.T) {
	requireE2E(t, "qemu-io", "chromium")
	e := newEnv(t)
	addr := freeLoopbackAddr(t)
	e.start("--metrics", addr, "--history-interval", "1s")
	mustRowctl(t, e.sock, "volume", "create", "vm1", "--size", "64M")
	file := filepath.Join(e.mnt, "vm1")
	qemuIO(t, file, "none", "write -P 1 0 2M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm1@base", "--description", "fresh install")
	qemuIO(t, file, "none", "write -P 2 0 1M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm1@upgrade")
	mustRowctl(t, e.sock, "snapshot", "rollback", "vm1@base", "--yes")
	qemuIO(t, file, "none", "write -P 3 4M 512k")
	mustRowctl(t, e.sock, "snapshot", "create", "vm1", "--auto")
	mustRowctl(t, e.sock, "volume", "clone", "vm1@base", "vm2")
	mustRowctl(t, e.sock, "group", "create", "web", "vm1", "vm2")
	mustRowctl(t, e.sock, "group", "snapshot", "web@nightly")
	mustRowctl(t, e.sock, "policy", "create", "hourly", "--every", "1h", "--keep", "3", "--start", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	mustRowctl(t, e.sock, "policy", "apply", "hourly", "vm2")
	// The history has a few samples of both volumes (sampled every second).
	deadline := time.Now().Add(30 * time.Second)
	for {
		var h api.CapacityHistory
		rowctlJSON(t, e.sock, &h, "du", "vm2", "--history", "--since", "1h")
		if len(h.Samples) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s vm2's history has %d samples", len(h.Samples))
		}
		time.Sleep(500 * time.Millisecond)
	}

	code, page := httpGet(t, "http://"+addr+"/")
	if code != http.StatusOK || len(page) > 200<<10 {
		t.Fatalf("/: %d, %d bytes (the page must be under 200 KB)", code, len(page))
	}
	profile := t.TempDir()
	chromium := func(extra ...string) string {
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile,
			"--virtual-time-budget=15000", "--window-size=1200,1800"}, extra...)
		cmd := exec.Command("chromium", append(args, "http://"+addr+"/")...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", extra, err)
		}
		return string(out)
	}
	dom := chromium("--dump-dom")
	for _, want := range []string{
		`data-loaded="true"`, `id="capacity-chart"`, `class="series" data-volume="all volumes"`,
		`class="series" data-volume="vm1"`, `class="series" data-volume="vm2"`,
		`data-node="base"`, `data-node="upgrade"`, `data-node="nightly"`, `data-node="head"`,
		`>auto</span>`, `group web`, `from vm1@base`, `hourly`, `every 1h0m0s`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %s", want)
		}
	}
	if t.Failed() {
		t.Fatalf("rendered DOM:\n%s", dom)
	}
	shot := filepath.Join(t.ArtifactDir(), "web.png")
	chromium("--screenshot=" + shot)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10<<10 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}

// TestAlertRules: docs/alerts.yml is valid, its unit tests
// (docs/alerts_test.yml) pass, and every rowfs metric a rule uses is one
// the daemon exports.
func TestAlertRules(t *testing.T) {
	requireE2E(t, "promtool")
	runCmd(t, "promtool", "check", "rules", "../../docs/alerts.yml")
	runCmd(t, "promtool", "test", "rules", "../../docs/alerts_test.yml")
	rules, err := os.ReadFile("../../docs/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	source, err := os.ReadFile("../../daemon/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`rowfs_[a-z_]+`).FindAllString(string(rules), -1) {
		if !strings.Contains(string(source), `"`+name+`"`) {
			t.Errorf("docs/alerts.yml uses %s, which rowfsd does not export", name)
		}
	}
}
