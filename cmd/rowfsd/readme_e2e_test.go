package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// TestReadmeQuickstart follows the README from a fresh clone as a new
// user would: make run in the background, then every command it prints,
// in order, each of which must succeed. The qemu line is a VM: it runs
// until it is seen holding the volume open, then it is stopped (the
// README says to stop it before the rollback). The cloud image is a
// stand-in made here (no network), under the README's file name.
func TestReadmeQuickstart(t *testing.T) {
	requireE2E(t, "git", "make", "qemu-img", "qemu-io", "qemu-system-x86_64", "getfattr")
	if testing.Short() {
		t.Skip("the README walk-through builds a fresh clone; not in -short")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	quickstart, err := os.ReadFile("../../contrib/quickstart.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```\n"+string(quickstart)+"```") {
		t.Fatal("README.md's quickstart block is not contrib/quickstart.txt, which make run prints")
	}

	clone := filepath.Join(t.TempDir(), "rowfs")
	runCmd(t, "git", "clone", "-q", "../..", clone)
	metrics := freeLoopbackAddr(t)
	run := exec.Command("make", "run", "METRICS="+metrics)
	run.Dir = clone
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { run.Wait(); close(exited) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-run.Process.Pid, syscall.SIGINT) // Ctrl-C, as the README says
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("make run did not stop on Ctrl-C within 30 s")
		}
	}
	t.Cleanup(stop)

	// make run's output up to the daemon: the printed commands.
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var output []string
	deadline := time.After(15 * time.Minute) // a cold build compiles go-ceph
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("make run ended early:\n%s\n%s", strings.Join(output, "\n"), stderr.String())
			}
			output = append(output, line)
			done = strings.HasPrefix(line, "Ctrl-C here stops")
		case <-deadline:
			t.Fatalf("make run printed no quickstart in 15 minutes:\n%s\n%s", strings.Join(output, "\n"), stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	want := strings.ReplaceAll(string(quickstart), "$PWD", clone)
	// The commands: the indented lines after "In another terminal".
	var commands []string
	inBlock := false
	for _, line := range output {
		cmd, indented := strings.CutPrefix(line, "  ")
		switch {
		case strings.HasPrefix(line, "In another terminal"):
			inBlock = true
		case inBlock && indented:
			commands = append(commands, cmd)
		case inBlock:
			inBlock = false
		}
	}
	if got := strings.Join(commands, "\n") + "\n"; got != want {
		t.Fatalf("make run printed\n%s\nwant the README's quickstart with its paths:\n%s", got, want)
	}

	sock := filepath.Join(clone, ".run", "rowfsd.sock")
	waitFor(t, 60*time.Second, "the daemon's control socket", func() bool { return rowctl(t, sock, "pool", "info").code == 0 })
	image := filepath.Join(clone, "debian-12-genericcloud-amd64.qcow2")
	runCmd(t, "qemu-img", "create", "-q", "-f", "qcow2", image, "2G")
	runCmd(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xeb 0 1M", "-c", "write -P 0x55 1G 64k", image)

	env, commands := commands[0], commands[1:]
	if !strings.HasPrefix(env, "export ") {
		t.Fatalf("the quickstart starts with %q, not the export line", env)
	}
	shell := func(command string) *exec.Cmd {
		cmd := exec.Command("bash", "-c", env+"\n"+command)
		cmd.Dir = clone
		return cmd
	}
	for _, command := range commands {
		if strings.HasPrefix(command, "qemu-system-") {
			runVM(t, shell(command), sock)
			continue
		}
		out, err := shell(command).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s\ndaemon:\n%s", command, err, out, stderr.String())
		}
		t.Logf("$ %s\n%s", command, out)
	}
	// The converted image is on the volume, past the snapshot and rollback.
	out := runCmd(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, filepath.Join(clone, ".run", "mnt", "vm1"))
	if !strings.Contains(out, "identical") {
		t.Fatalf("the volume is not the image: %s", out)
	}
	stop()
	if mounted(filepath.Join(clone, ".run", "mnt")) {
		t.Fatal("Ctrl-C left the mount behind")
	}
}

// runVM starts the quickstart's qemu, waits until it holds the volume
// open and is still running, then stops it, as a user stops a VM.
func runVM(t *testing.T, cmd *exec.Cmd, sock string) {
	t.Helper()
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		<-exited
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("qemu exited: %v\n%s", err, out.String())
		default:
		}
		var v api.Volume
		r := rowctl(t, sock, "volume", "info", "vm1", "--json")
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &v) == nil && v.OpenHandles > 0 {
			t.Logf("qemu runs with vm1 open (%d handles); its console:\n%s", v.OpenHandles, firstLines(out.String(), 10))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu did not open vm1 in 60 s:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func firstLines(s string, n int) string {
	ansi := regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1bc`)
	ls := strings.Split(ansi.ReplaceAllString(s, ""), "\n")
	return strings.Join(ls[:min(n, len(ls))], "\n")
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
