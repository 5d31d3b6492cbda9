package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// qemuIOSession is qemu-io run interactively on one volume file: each
// command is sent on its stdin and answered once qemu-io has done it.
type qemuIOSession struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startQemuIO(t *testing.T, file string) *qemuIOSession {
	t.Helper()
	cmd := exec.Command("qemu-io", "-f", "raw", "-t", "none", file)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &qemuIOSession{cmd: cmd, in: in, out: bufio.NewReader(out)}
}

// do runs one command: its answer ends with qemu-io's "…, 1 ops; …" line.
func (q *qemuIOSession) do(command string) error {
	if _, err := fmt.Fprintln(q.in, command); err != nil {
		return err
	}
	for {
		line, err := q.out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%s: %v", command, err)
		}
		if strings.Contains(line, "failed") || strings.Contains(line, "error") {
			return fmt.Errorf("%s: %s", command, strings.TrimSpace(line))
		}
		if strings.Contains(line, " ops; ") {
			return nil
		}
	}
}

func (q *qemuIOSession) close() {
	q.in.Close()
	_ = q.cmd.Wait()
}

// TestGroupSnapshotWhileQemuIOWrites: three qemu-io processes write
// records to three volumes through the mount, one 4 KiB slot after the
// other; their numbers come from one counter, and each writer notes the
// counter once qemu-io has answered. For every group snapshot taken
// meanwhile, the member snapshots agree on one cut: no record answered
// before another record was numbered is missing while that other one is
// present, on any member. Then a group rollback restores all three, and
// the validity rules hold case by case through rowctl.
func TestGroupSnapshotWhileQemuIOWrites(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	e.start()
	vols := []string{"d1", "d2", "d3"}
	const slot, slots = 4096, 8192
	for _, v := range vols {
		createVolume(t, e.sock, v, "32M")
	}
	mustRowctl(t, e.sock, "group", "create", "vm", "d1", "d2", "d3")

	var counter atomic.Uint64
	numbers := make([][]uint64, len(vols))   // per writer, per slot: the record's number
	completed := make([][]uint64, len(vols)) // per writer, per slot: the counter once answered
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(vols))
	for w, v := range vols {
		numbers[w], completed[w] = make([]uint64, slots), make([]uint64, slots)
		q := startQemuIO(t, filepath.Join(e.mnt, v))
		wg.Go(func() {
			defer q.close()
			for s := range slots {
				select {
				case <-stop:
					return
				default:
				}
				n := counter.Add(1)
				if err := q.do(fmt.Sprintf("write -P 0x%02x %d %d", w+1, s*slot, slot)); err != nil {
					errs <- err
					return
				}
				numbers[w][s], completed[w][s] = n, counter.Load()
			}
		})
	}
	var points []string
	for i := range 6 {
		time.Sleep(time.Duration(40+20*i) * time.Millisecond)
		name := fmt.Sprintf("p%d", i+1)
		mustRowctl(t, e.sock, "group", "snapshot", "vm@"+name)
		points = append(points, name)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if counter.Load() < 100 {
		t.Fatalf("the writers wrote only %d records", counter.Load())
	}
	midRun := 0
	for _, pt := range points {
		minMissing, maxPresent, present := ^uint64(0), uint64(0), 0
		for w, v := range vols {
			data, err := os.ReadFile(filepath.Join(e.mnt, ".snapshots", v, pt))
			if err != nil {
				t.Fatal(err)
			}
			for s := range slots {
				switch {
				case numbers[w][s] == 0: // never written
				case data[s*slot] == byte(w+1):
					maxPresent = max(maxPresent, numbers[w][s])
					present++
				default:
					minMissing = min(minMissing, completed[w][s])
				}
			}
		}
		if minMissing < maxPresent {
			t.Errorf("group snapshot %s: a record answered when the counter was %d is missing, while record %d (numbered later) is in it", pt, minMissing, maxPresent)
		}
		t.Logf("%s: %d records, the newest numbered %d", pt, present, maxPresent)
		if present > 0 && uint64(present) < counter.Load() {
			midRun++
		}
	}
	if midRun < 2 {
		t.Fatalf("only %d group snapshots fell while the writers ran: the test checked no cut", midRun)
	}

	// Group rollback restores every member to the point.
	mustRowctl(t, e.sock, "group", "rollback", "vm@p3", "--yes")
	for _, v := range vols {
		runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(e.mnt, ".snapshots", v, "p3"), filepath.Join(e.mnt, v))
	}

	// The validity rules, case by case.
	valid := func(point string) (bool, string) {
		var g api.Group
		rowctlJSON(t, e.sock, &g, "group", "info", "vm")
		for _, p := range g.Points {
			if p.Name == point {
				return p.Valid, p.Why
			}
		}
		t.Fatalf("no point %s in %+v", point, g.Points)
		return false, ""
	}
	expect := func(point string, want bool, what string) {
		t.Helper()
		if got, why := valid(point); got != want {
			t.Errorf("%s: %s valid %v (%s), want %v", what, point, got, why, want)
		}
	}
	expect("p2", true, "every member there")
	mustRowctl(t, e.sock, "snapshot", "delete", "d2@p2")
	expect("p2", false, "a member snapshot deleted")
	if r := rowctl(t, e.sock, "group", "rollback", "vm@p2", "--yes"); r.code != 2 {
		t.Errorf("rollback of a point without a member snapshot: exit %d, %s", r.code, r.stderr)
	}
	mustRowctl(t, e.sock, "group", "remove", "vm", "d3")
	expect("p4", false, "a volume removed")
	mustRowctl(t, e.sock, "group", "add", "vm", "d3")
	expect("p4", true, "the volume removed and added back")
	createVolume(t, e.sock, "d4", "8M")
	mustRowctl(t, e.sock, "group", "add", "vm", "d4")
	expect("p4", false, "a volume joined after the point")
	// Single-volume rollback stays possible from an invalid point.
	mustRowctl(t, e.sock, "snapshot", "rollback", "d1@p4", "--yes")
}
