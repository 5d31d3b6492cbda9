package main

// End-to-end tests: the real rowfsd and rowctl binaries, a real FUSE mount,
// and qemu-img/qemu-io as the clients. They need root and /dev/fuse; make
// test installs qemu-utils. Where a part cannot exist they skip, loudly.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binDir string

// buildTags are the tags this test binary was built with that the binaries
// under test need too (set by rbd_e2e_test.go when built with the RBD
// backend).
var buildTags []string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rowfs-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range []string{"rowfsd", "rowctl"} {
		out, err := exec.Command("go", "build", "-tags", strings.Join(buildTags, ","), "-o", filepath.Join(dir, b), "github.com/rowfs/rowfs/cmd/"+b).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b, err, out)
			os.Exit(1)
		}
	}
	binDir = dir
	flag.Parse()
	if timeout := flag.Lookup("test.timeout").Value.(flag.Getter).Get().(time.Duration); timeout > 0 {
		time.AfterFunc(timeout-min(timeout/10, 90*time.Second), dumpHung)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireE2E skips, loudly, where the parts cannot exist; under CI a
// missing tool that make test should have installed is a failure.
func requireE2E(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse")
	}
	for _, tool := range append([]string{"fusermount3"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("END-TO-END TEST NOT RUN: missing %s (run `make test` as root)", strings.Join(missing, ", "))
	fmt.Fprintln(os.Stderr, "!!! "+msg)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// lockedBuffer collects the daemon's log from its output goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// live are the daemons started and not yet exited, for dumpHung.
var live struct {
	sync.Mutex
	daemons map[*rowfsd]bool
}

// dumpHung runs shortly before go test's own timeout. A daemon that stops
// answering FUSE requests leaves this test process in requests it cannot
// interrupt, so go test's kill at the timeout would hang instead of
// reporting. Each live daemon is made to dump its goroutines (SIGQUIT,
// GOTRACEBACK=all) and so exits, which aborts its mount's requests; then
// this process's goroutines are dumped and it exits.
func dumpHung() {
	live.Lock()
	var daemons []*rowfsd
	for d := range live.daemons {
		daemons = append(daemons, d)
	}
	live.Unlock()
	fmt.Fprintf(os.Stderr, "!!! test deadline near: %d rowfsd still running; dumping their goroutines, then ours\n", len(daemons))
	for _, d := range daemons {
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			select {
			case <-d.exited:
			case <-time.After(10 * time.Second):
				// Unkillable: a thread waits in the kernel (on a FUSE
				// request to itself, say). Say where.
				fmt.Fprintf(os.Stderr, "!!! rowfsd %d does not die; its threads wait in:\n%s\n", d.cmd.Process.Pid, kernelWaits(d.cmd.Process.Pid))
			}
		}
		fmt.Fprintf(os.Stderr, "!!! rowfsd of %s (pool %s):\n%s\n", d.t.Name(), d.pool, d.log)
	}
	pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
	os.Exit(2)
}

// kernelWaits is each thread's state and kernel wait channel.
func kernelWaits(pid int) string {
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		state := "?"
		if stat, _ := os.ReadFile(task + "/stat"); len(bytes.Fields(stat)) > 2 {
			state = string(bytes.Fields(stat)[2])
		}
		wchan, _ := os.ReadFile(task + "/wchan")
		stack, _ := os.ReadFile(task + "/stack")
		fmt.Fprintf(&b, "%s: state %s, wchan %s\n%s", filepath.Base(task), state, wchan, stack)
	}
	return b.String()
}

type rowfsd struct {
	t               *testing.T
	pool, mnt, sock string
	cmd             *exec.Cmd
	log             *lockedBuffer
	exited          chan struct{}
	// notices are the sd_notify messages after READY=1 (WATCHDOG=1 …);
	// ones that find it full are dropped.
	notices chan string
}

// env is one test's directories: a pool, a mount point and a socket.
type env struct {
	t               *testing.T
	pool, mnt, sock string
}

func newEnv(t *testing.T) env {
	dir := t.TempDir()
	return env{t: t, pool: filepath.Join(dir, "pool"), mnt: filepath.Join(dir, "mnt"), sock: filepath.Join(dir, "ctl.sock")}
}

// start runs rowfsd and waits for its sd_notify READY=1, never a sleep.
func (e env) start(extra ...string) *rowfsd { return e.startWith(nil, extra...) }

// startWith is start with extra environment variables for the daemon.
func (e env) startWith(environ []string, extra ...string) *rowfsd {
	e.t.Helper()
	d, err := e.tryStart(environ, extra...)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// tryStart is startWith that returns a daemon that did not get ready as an
// error (with the daemon, exited, for its log).
func (e env) tryStart(environ []string, extra ...string) (*rowfsd, error) {
	t := e.t
	t.Helper()
	notifyPath := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notify.Close() })
	args := append([]string{"--pool", e.pool, "--mount", e.mnt, "--socket", e.sock, "--block-size", "64K"}, extra...)
	d := &rowfsd{t: t, pool: e.pool, mnt: e.mnt, sock: e.sock, log: &lockedBuffer{}, exited: make(chan struct{}), notices: make(chan string, 16)}
	d.cmd = exec.Command(filepath.Join(binDir, "rowfsd"), args...)
	d.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "GOTRACEBACK=all"), environ...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	live.Lock()
	if live.daemons == nil {
		live.daemons = map[*rowfsd]bool{}
	}
	live.daemons[d] = true
	live.Unlock()
	go func() {
		d.cmd.Wait()
		live.Lock()
		delete(live.daemons, d)
		live.Unlock()
		close(d.exited)
	}()
	t.Cleanup(d.stop)
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				ready <- err
				return
			}
			if msg := string(buf[:n]); strings.Contains(msg, "READY=1") {
				ready <- nil
			} else {
				select {
				case d.notices <- msg:
				default:
				}
			}
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			return d, fmt.Errorf("waiting for rowfsd: %v\n%s", err, d.log)
		}
	case <-d.exited:
		return d, fmt.Errorf("rowfsd exited before it was ready:\n%s", d.log)
	case <-time.After(60 * time.Second):
		return d, fmt.Errorf("rowfsd not ready after 60s:\n%s", d.log)
	}
	return d, nil
}

// stop sends SIGTERM and waits; the mount must be gone afterwards. A
// daemon that had already exited in a failed test shows how it ended
// (a crash in librbd prints only to its stderr); a dead mount it left,
// this test's own, is detached so the machine keeps none.
func (d *rowfsd) stop() {
	select {
	case <-d.exited:
		if d.t.Failed() {
			d.t.Logf("rowfsd had exited (%v):\n%s", d.cmd.ProcessState, d.log)
		}
		// Only a dead one: a test may have started another daemon on it.
		if _, err := os.Stat(d.mnt); errors.Is(err, syscall.ENOTCONN) {
			exec.Command("fusermount3", "-u", "-z", d.mnt).Run()
		}
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("rowfsd did not stop on SIGTERM within 60s:\n%s", d.log)
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Errorf("rowfsd exited %d after SIGTERM:\n%s", code, d.log)
	}
	if mounted(d.mnt) {
		d.t.Errorf("%s still mounted after rowfsd stopped", d.mnt)
		exec.Command("fusermount3", "-u", "-z", d.mnt).Run()
	}
}

// logs waits up to 10 s for the daemon's log to contain text: the log
// reaches the test through a pipe and a copying goroutine, so a line the
// daemon wrote before answering may arrive after the answer.
func (d *rowfsd) logs(text string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), text) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// diesSoon reports whether the daemon exits within 2 s (a request that
// failed because it was dying returns a little before its exit is seen).
func (d *rowfsd) diesSoon() bool {
	select {
	case <-d.exited:
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}

// kill9 kills the daemon without any cleanup, leaving a dead mount behind.
func (d *rowfsd) kill9() {
	d.cmd.Process.Kill()
	<-d.exited
	d.t.Cleanup(func() {
		if mounted(d.mnt) {
			exec.Command("fusermount3", "-u", "-z", d.mnt).Run()
		}
	})
}

func mounted(dir string) bool {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

type result struct {
	stdout, stderr string
	code           int
}

// rowctl runs the real rowctl binary against sock.
func rowctl(t *testing.T, sock string, args ...string) result {
	t.Helper()
	return rowctlAs(t, nil, sock, args...)
}

// rowctlAs runs rowctl as another user (cred nil: as the test).
func rowctlAs(t *testing.T, cred *syscall.Credential, sock string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "rowctl"), append([]string{"--socket", sock}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("rowctl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

func mustRowctl(t *testing.T, sock string, args ...string) string {
	t.Helper()
	r := rowctl(t, sock, args...)
	if r.code != 0 {
		t.Fatalf("rowctl %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func rowctlJSON(t *testing.T, sock string, into any, args ...string) {
	t.Helper()
	out := mustRowctl(t, sock, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("rowctl %v --json: %v\n%s", args, err, out)
	}
}

// run runs a command and fails the test on a non-zero exit.
func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuIO runs qemu-io commands on a raw image and fails on any failed command.
func qemuIO(t *testing.T, file, cache string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "raw", "-t", cache, "-d", "unmap"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runCmd(t, "qemu-io", append(args, file)...)
	if strings.Contains(out, "failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io %s: %s", file, out)
	}
	return out
}

// TestHarnessDetachesDeadMount: a daemon that died (as librbd's abort
// kills it) leaves a dead mount; stopping it detaches that mount, so the
// test's directory can go and the machine keeps no dead mounts.
func TestHarnessDetachesDeadMount(t *testing.T) {
	requireE2E(t)
	e := newEnv(t)
	d := e.start()
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	if _, err := os.Stat(d.mnt); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of the killed daemon's mount: %v, want ENOTCONN", err)
	}
	d.stop()
	if mounted(d.mnt) {
		t.Fatal("the dead mount is still there after stop")
	}
}
