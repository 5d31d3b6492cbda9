package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// guestVM is a real Linux guest (testdata/guest/build.sh) on two rowfs
// volumes, with its qemu guest agent on a socket, writing records to
// both disks as fast as it can.
type guestVM struct {
	console *lockedBuffer
	cmd     *exec.Cmd
	exited  chan struct{}
}

func bootGuest(t *testing.T, mnt, qgaSocket string, disks ...string) *guestVM {
	t.Helper()
	assets := t.TempDir()
	runCmd(t, "../../testdata/guest/build.sh", assets)
	args := []string{"-m", "256M", "-nographic", "-no-reboot", "-kernel", filepath.Join(assets, "vmlinuz"),
		"-initrd", filepath.Join(assets, "initrd.gz"), "-append", "console=ttyS0 rdinit=/init quiet panic=-1",
		"-chardev", "socket,id=qga0,path=" + qgaSocket + ",server=on,wait=off",
		"-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"}
	for _, d := range disks {
		args = append(args, "-drive", "file="+filepath.Join(mnt, d)+",format=raw,if=virtio,cache=none,aio=threads")
	}
	vm := &guestVM{console: &lockedBuffer{}, exited: make(chan struct{})}
	vm.cmd = exec.Command("qemu-system-x86_64", args...)
	vm.cmd.Stdout, vm.cmd.Stderr = vm.console, vm.console
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := vm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { vm.cmd.Wait(); close(vm.exited) }()
	t.Cleanup(vm.stop)
	vm.waitConsole(t, "GUEST-READY", 120*time.Second)
	return vm
}

func (vm *guestVM) stop() {
	_ = syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
	<-vm.exited
}

// waitConsole waits for text on the guest's serial console.
func (vm *guestVM) waitConsole(t *testing.T, text string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(vm.console.String(), text) {
		select {
		case <-vm.exited:
			t.Fatalf("the guest stopped before %q:\n%s", text, vm.console)
		default:
		}
		if strings.Contains(vm.console.String(), "GUEST-FAILED") || time.Now().After(deadline) {
			t.Fatalf("no %q from the guest:\n%s", text, vm.console)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// written is the guest's last progress report.
func (vm *guestVM) written() string {
	c := vm.console.String()
	i := strings.LastIndex(c, "GUEST-WROTE ")
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(c[i:], "\n")
	return strings.TrimSpace(line)
}

// TestGroupSnapshotFrozenByGuestAgent: a group snapshot of a running
// guest's two disks, with the group's --qga-socket, freezes the guest's
// ext4 filesystems through its real qemu guest agent: both member
// snapshots are clean filesystems (no journal to replay, e2fsck finds
// nothing), where a plain snapshot of the same busy disk needs recovery;
// the guest is thawed and keeps writing. A group whose agent does not
// answer gets a crash-consistent point that says so, within the bound.
func TestGroupSnapshotFrozenByGuestAgent(t *testing.T) {
	requireE2E(t, "qemu-system-x86_64", "mkfs.ext4", "dumpe2fs", "e2fsck", "cpio", "apt-get", "dpkg-deb")
	e := newEnv(t)
	e.start()
	for _, v := range []string{"data", "logs"} {
		mustRowctl(t, e.sock, "volume", "create", v, "--size", "128M")
		runCmd(t, "mkfs.ext4", "-q", "-F", filepath.Join(e.mnt, v))
	}
	qga := filepath.Join(t.TempDir(), "qga.sock")
	mustRowctl(t, e.sock, "group", "create", "vm", "data", "logs", "--qga-socket", qga)
	vm := bootGuest(t, e.mnt, qga, "data", "logs")
	vm.waitConsole(t, "GUEST-WROTE 5000", 60*time.Second)

	mustRowctl(t, e.sock, "snapshot", "create", "data@crash")
	var res api.GroupSnapshotResult
	rowctlJSON(t, e.sock, &res, "group", "snapshot", "vm@frozen")
	if res.Consistency != "frozen" || res.Note != "" {
		t.Fatalf("group snapshot with the guest agent: consistency %q, note %q\n%s", res.Consistency, res.Note, vm.console)
	}
	snap := func(vol, name string) string { return filepath.Join(e.mnt, ".snapshots", vol, name) }
	features := func(image string) string {
		out := runCmd(t, "dumpe2fs", "-h", image)
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "Filesystem features:") {
				return line
			}
		}
		t.Fatalf("dumpe2fs %s: no features line\n%s", image, out)
		return ""
	}
	if f := features(snap("data", "crash")); !strings.Contains(f, "needs_recovery") {
		t.Fatalf("a plain snapshot of the busy disk is clean (%s): the test cannot tell a freeze from none", f)
	}
	for _, vol := range []string{"data", "logs"} {
		if f := features(snap(vol, "frozen")); strings.Contains(f, "needs_recovery") {
			t.Errorf("%s@frozen needs journal recovery: the guest was not frozen at the cut (%s)", vol, f)
		}
		if out, err := exec.Command("e2fsck", "-fn", snap(vol, "frozen")).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn %s@frozen: %v\n%s", vol, err, out)
		}
	}
	var g api.Group
	rowctlJSON(t, e.sock, &g, "group", "info", "vm")
	if len(g.Points) != 1 || g.Points[0].Consistency != "frozen" || g.QGASocket != qga {
		t.Fatalf("group info: %+v", g)
	}
	// Thawed: the guest writes on.
	before := vm.written()
	deadline := time.Now().Add(30 * time.Second)
	for vm.written() == before {
		if time.Now().After(deadline) {
			t.Fatalf("the guest wrote nothing after the snapshot (still frozen?): last %q", before)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// An agent that is not there: crash-consistent, said so, within the bound.
	mustRowctl(t, e.sock, "group", "hooks", "vm", "--qga-socket", filepath.Join(t.TempDir(), "absent.sock"))
	start := time.Now()
	rowctlJSON(t, e.sock, &res, "group", "snapshot", "vm@unfrozen")
	if res.Consistency != "crash" || !strings.Contains(res.Note, "guest agent") || time.Since(start) > 15*time.Second {
		t.Fatalf("with no agent: consistency %q, note %q after %s", res.Consistency, res.Note, time.Since(start))
	}
	out, _ := json.Marshal(res)
	t.Logf("without an agent: %s", out)
}
