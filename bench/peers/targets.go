package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rowfs/rowfs/ctl"
	"github.com/rowfs/rowfs/ctl/api"
)

// Families of targets, in the order of the report's columns.
const (
	famRaw         = "raw file"
	famPassthrough = "go-fuse passthrough"
	famQsdRaw      = "qsd raw"
	famQcow2       = "qsd qcow2"
	famRowfs       = "rowfs"
)

const clusterSize = 64 << 10 // qcow2 cluster and rowfs block: the same unit

// A target is one file fio runs against.
type target struct {
	family string
	depth  int // snapshots under the active layer; 0 for a flat image
	file   string
	// freshTop, for chains, discards what the last write run left in the
	// active layer: every write run then measures the first writes after a
	// snapshot at this depth, and every read run reads the chain itself.
	freshTop func() error
	dirty    bool
	stop     func()
}

func (t *target) name() string {
	if t.depth == 0 {
		return t.family
	}
	return fmt.Sprintf("%s d%d", t.family, t.depth)
}

// prepare readies t for job j.
func (t *target) prepare(j job) error {
	if t.freshTop != nil && t.dirty {
		if err := t.freshTop(); err != nil {
			return fmt.Errorf("%s: fresh top: %w", t.name(), err)
		}
		t.dirty = false
	}
	if j.writes() {
		t.dirty = true
	}
	return nil
}

// bench holds what the targets share: binaries, scratch space, size.
type bench struct {
	bin, work string
	size      int64
}

func (b *bench) path(name string) string { return filepath.Join(b.work, name) }

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (b *bench) rawFile() *target {
	file := b.path("raw.img")
	check(os.WriteFile(file, nil, 0o644))
	check(os.Truncate(file, b.size))
	return &target{family: famRaw, file: file, stop: func() {}}
}

func (b *bench) passthrough() *target {
	backing, mnt := b.path("passthrough.img"), b.path("passthrough-mnt")
	check(os.WriteFile(backing, nil, 0o644))
	check(os.Truncate(backing, b.size))
	check(os.MkdirAll(mnt, 0o755))
	cmd := exec.Command(filepath.Join(b.bin, "passthrough"), "--file", backing, "--mount", mnt)
	stderr, err := cmd.StderrPipe()
	check(err)
	check(cmd.Start())
	rd := bufio.NewReader(stderr)
	for { // readiness: its "ready" line
		line, err := rd.ReadString('\n')
		check(err)
		if strings.Contains(line, "ready") {
			break
		}
	}
	go io.Copy(os.Stderr, rd)
	return &target{family: famPassthrough, file: filepath.Join(mnt, "disk.img"), stop: stopper(cmd)}
}

// qsd is one qemu-storage-daemon exporting an image as a FUSE file.
type qsd struct {
	image, format, mountpoint, pidfile string
}

func (q *qsd) start() error {
	if err := os.WriteFile(q.mountpoint, nil, 0o644); err != nil { // qsd mounts over a regular file
		return err
	}
	file := "driver=file,node-name=file0,filename=" + q.image
	node := "file0"
	args := []string{"--daemonize", "--pidfile", q.pidfile, "--blockdev", file}
	if q.format == "qcow2" {
		args = append(args, "--blockdev", "driver=qcow2,node-name=fmt0,file=file0")
		node = "fmt0"
	}
	args = append(args, "--export", "type=fuse,id=exp0,node-name="+node+",mountpoint="+q.mountpoint+",writable=on")
	return run("qemu-storage-daemon", args...) // --daemonize returns once the export is up
}

func (q *qsd) stop() {
	pid, err := os.ReadFile(q.pidfile)
	if err != nil {
		return
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
	if n <= 0 || syscall.Kill(n, syscall.SIGTERM) != nil {
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if syscall.Kill(n, 0) != nil {
			return
		}
	}
	log.Printf("qemu-storage-daemon %d did not stop", n)
}

func (b *bench) qsdRaw() *target {
	img := b.path("qsd-raw.img")
	check(os.WriteFile(img, nil, 0o644))
	check(os.Truncate(img, b.size))
	q := &qsd{image: img, format: "raw", mountpoint: b.path("qsd-raw.export"), pidfile: b.path("qsd-raw.pid")}
	check(q.start())
	return &target{family: famQsdRaw, file: q.mountpoint, stop: q.stop}
}

// qcow2Chain builds a qcow2 image (64 KiB clusters) with depth backing
// layers below a fresh active layer. Layer i holds the clusters whose index
// is i modulo depth, so reads of the whole range visit every layer. With
// depth 0 it is one flat image, filled later like the other flat targets.
func (b *bench) qcow2Chain(depth int) *target {
	prefix := b.path(fmt.Sprintf("qcow2-d%d", depth))
	top := prefix + "-top.qcow2"
	create := func(image, backing string) error {
		args := []string{"create", "-q", "-f", "qcow2", "-o", "cluster_size=64k"}
		if backing != "" {
			args = append(args, "-b", backing, "-F", "qcow2")
		}
		return run("qemu-img", append(args, image, strconv.FormatInt(b.size, 10))...)
	}
	backing := ""
	clusters := int(b.size / clusterSize)
	for layer := range depth {
		image := fmt.Sprintf("%s-layer%03d.qcow2", prefix, layer)
		check(create(image, backing))
		args := []string{"-f", "qcow2", image}
		if depth == 1 { // every cluster: one write
			args = append(args, "-c", fmt.Sprintf("write -q -P 1 0 %d", b.size))
		}
		for c := layer; c < clusters && depth > 1; c += depth {
			args = append(args, "-c", fmt.Sprintf("write -q -P %d %d 64k", layer%251+1, c*clusterSize))
		}
		check(run("qemu-io", args...))
		backing = image
	}
	check(create(top, backing))
	q := &qsd{image: top, format: "qcow2", mountpoint: prefix + ".export", pidfile: prefix + ".pid"}
	check(q.start())
	t := &target{family: famQcow2, depth: depth, file: q.mountpoint, stop: q.stop}
	if depth > 0 {
		t.freshTop = func() error {
			q.stop()
			if err := os.Remove(top); err != nil {
				return err
			}
			if err := create(top, backing); err != nil {
				return err
			}
			return q.start()
		}
	}
	return t
}

// rowfsd is one daemon serving the rowfs targets.
type rowfsd struct {
	cmd    *exec.Cmd
	mount  string
	client *ctl.Client
	stop   func()
}

func (b *bench) startRowfsd(name string, extra ...string) *rowfsd {
	return b.startRowfsdEnv(name, nil, extra...)
}

// startRowfsdEnv is startRowfsd with more environment for the daemon.
func (b *bench) startRowfsdEnv(name string, env []string, extra ...string) *rowfsd {
	sock, mnt := b.path(name+".sock"), b.path(name+"-mnt")
	notifyPath := b.path(name + ".notify")
	_ = os.Remove(notifyPath) // a restart of the same daemon (the scale section)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	check(err)
	defer notify.Close()
	args := append([]string{"--pool", b.path(name + "-pool"), "--mount", mnt, "--socket", sock, "--log-level", "warn"}, extra...)
	cmd := exec.Command(filepath.Join(b.bin, "rowfsd"), args...)
	cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+notifyPath), env...)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	stop := atExit(stopper(cmd))
	check(notify.SetReadDeadline(time.Now().Add(60 * time.Second)))
	_, err = notify.Read(make([]byte, 256)) // sd_notify READY=1
	check(err)
	return &rowfsd{cmd: cmd, mount: mnt, client: ctl.NewClient(sock), stop: stop}
}

// volume creates a volume with depth snapshots spread as in qcow2Chain.
func (d *rowfsd) volume(name string, size int64, depth int) *target {
	ctx := context.Background()
	_, err := d.client.CreateVolume(ctx, api.CreateVolumeRequest{Name: name, Size: uint64(size)})
	check(err)
	file := filepath.Join(d.mount, name)
	t := &target{family: famRowfs, depth: depth, file: file, stop: func() {}}
	if depth == 0 {
		return t
	}
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	check(err)
	block := make([]byte, clusterSize)
	clusters := int(size / clusterSize)
	for layer := range depth {
		for i := range block {
			block[i] = byte(layer%251 + 1)
		}
		for c := layer; c < clusters; c += depth {
			_, err := f.WriteAt(block, int64(c)*clusterSize)
			check(err)
		}
		check(f.Sync())
		_, err := d.client.CreateSnapshot(ctx, name, api.CreateSnapshotRequest{Name: fmt.Sprintf("layer%03d", layer)})
		check(err)
	}
	check(f.Close())
	last := fmt.Sprintf("layer%03d", depth-1)
	t.freshTop = func() error {
		res, err := d.client.Rollback(ctx, name, api.RollbackRequest{Snapshot: last})
		if err != nil {
			return err
		}
		if res.Job != nil { // the old top's blocks are freed in the background
			_, err = d.client.WaitJob(ctx, res.Job.ID, nil)
		}
		return err
	}
	return t
}

func stopper(cmd *exec.Cmd) func() {
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}
