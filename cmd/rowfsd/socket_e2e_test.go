package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func asUser(t *testing.T, sock string, uid, gid uint32, args ...string) result {
	t.Helper()
	return rowctlAs(t, &syscall.Credential{Uid: uid, Gid: gid}, sock, args...)
}

// TestControlSocketPeers: the socket is 0660 and owned by the configured
// group; its members may use it; a process the policy does not allow is
// refused with 403 even when the file's mode would let it connect; and
// oversized or malformed requests get 400 with a message.
func TestControlSocketPeers(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	// Let other users reach the socket and the binaries.
	for dir := filepath.Dir(e.sock); dir != "/" && dir != os.TempDir(); dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755)
	}
	os.Chmod(binDir, 0o755)
	e.start("--socket-group", "65534")
	st, err := os.Stat(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o660 || sys.Gid != 65534 {
		t.Fatalf("socket mode %v gid %d, want 0660 gid 65534", st.Mode().Perm(), sys.Gid)
	}
	if r := asUser(t, e.sock, 4242, 65534, "volume", "list"); r.code != 0 {
		t.Fatalf("a member of the socket group was refused: exit %d: %s", r.code, r.stderr)
	}
	if r := asUser(t, e.sock, 4242, 4242, "volume", "list"); r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("the socket's mode let a stranger in: exit %d: %s", r.code, r.stderr)
	}
	// With the file opened up by mistake, the peer check still refuses.
	if err := os.Chmod(e.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	r := asUser(t, e.sock, 4242, 4242, "volume", "list")
	if r.code == 0 || !strings.Contains(r.stderr, "uid 4242 (gid 4242) may not use this rowfsd") {
		t.Fatalf("peer check: want a refusal naming uid 4242, got exit %d: %s", r.code, r.stderr)
	}

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.sock)
	}}}
	post := func(body io.Reader) (int, string) {
		resp, err := client.Post("http://rowfsd/v1/volumes", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(strings.NewReader(`{"name":"x","size":`)); code != 400 || !strings.Contains(body, "malformed request body") {
		t.Fatalf("malformed JSON: %d %s", code, body)
	}
	big := `{"name":"x","size":1048576,"pad":"` + strings.Repeat("a", 2<<20) + `"}`
	if code, body := post(strings.NewReader(big)); code != 400 || !strings.Contains(body, "too large") {
		t.Fatalf("2 MiB request: %d %s", code, body)
	}
}

// A second daemon pointed at a live daemon's control socket is refused
// before it creates its pool or its mount point: a config mistake leaves
// nothing on disk, and the first daemon keeps serving.
func TestSocketInUseRefusedBeforePoolIsCreated(t *testing.T) {
	requireE2E(t)
	first := newEnv(t)
	first.start()
	second := newEnv(t)
	second.sock = first.sock
	d, err := second.tryStart(nil)
	if err == nil {
		t.Fatal("second daemon on a live socket started")
	}
	<-d.exited
	if !d.logs("in use by another rowfsd") {
		t.Fatalf("refusal does not say why:\n%s", d.log)
	}
	for _, dir := range []string{second.pool, second.mnt} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s exists after the refused start (%v)", dir, err)
		}
	}
	mustRowctl(t, first.sock, "pool", "info")
}

// Shell completion asks the daemon for the names it completes:
// `rowctl __complete snapshot rollback vm1@` lists vm1's snapshots, and so
// on for volumes, groups, group snapshots and policies. With the daemon
// stopped it completes nothing, quickly.
func TestCompletionOfNames(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	d := e.start()
	createVolume(t, e.sock, "vm1", "1M")
	createVolume(t, e.sock, "vm2", "1M")
	mustRowctl(t, e.sock, "snapshot", "create", "vm1@s1")
	mustRowctl(t, e.sock, "snapshot", "create", "vm1@s2")
	mustRowctl(t, e.sock, "snapshot", "create", "vm2@other")
	mustRowctl(t, e.sock, "group", "create", "web", "vm1", "vm2")
	mustRowctl(t, e.sock, "group", "snapshot", "web@nightly")
	// First run tomorrow: no automatic snapshot appears during the test.
	mustRowctl(t, e.sock, "policy", "create", "hourly", "--every", "1h", "--start", time.Now().Add(24*time.Hour).Format(time.RFC3339), "vm1")

	complete := func(args ...string) []string {
		t.Helper()
		r := rowctl(t, e.sock, append([]string{"__complete"}, args...)...)
		if r.code != 0 {
			t.Fatalf("__complete %v: exit %d\n%s", args, r.code, r.stderr)
		}
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if !strings.HasPrefix(line, ":") { // the last line is the directive
				names = append(names, line)
			}
		}
		return names
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "rollback", "vm1@"}, "vm1@s1 vm1@s2 vm1@nightly"},
		{[]string{"snapshot", "rollback", ""}, "vm1@ vm2@"},
		{[]string{"volume", "info", ""}, "vm1 vm2"},
		{[]string{"group", "rollback", "web@"}, "web@nightly"},
		{[]string{"group", "info", ""}, "web"},
		{[]string{"policy", "run", ""}, "hourly"},
		{[]string{"volume", "create", ""}, ""},
	} {
		if got := strings.Join(complete(c.args...), " "); got != c.want {
			t.Errorf("__complete %v: %q, want %q", c.args, got, c.want)
		}
	}
	d.stop()
	start := time.Now()
	if got := complete("snapshot", "rollback", "vm1@"); len(got) > 0 || time.Since(start) > 5*time.Second {
		t.Errorf("with the daemon stopped: %q after %v, want nothing at once", got, time.Since(start))
	}
}
