package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A rowfsd mounts only on a directory that nothing is mounted on, or over a
// mount it can prove is a dead rowfs: one whose FUSE connection answers
// ENOTCONN (its daemon was killed), or one of this very pool, whose lock
// this daemon now holds. Anything else (a live rowfsd of another pool, a
// tmpfs, an NFS export) is refused with what is mounted there named:
// detaching it would put one VM's reads on another VM's disk.

// rowfsFSType is the filesystem type of every rowfs mount in mountinfo
// ("fuse." + the go-fuse Name).
const rowfsFSType = "fuse.rowfs"

// mountSource is the source field of a rowfs mount of poolDir, which is
// how a later daemon tells its own pool's mount from another's.
func mountSource(poolDir string) string { return "rowfs:" + poolDir }

// mountInfo is one line of /proc/self/mountinfo.
type mountInfo struct {
	FSType, Source string
}

func (m mountInfo) String() string { return fmt.Sprintf("%s (source %s)", m.FSType, m.Source) }

// mountPoint is what inspectMountPoint found at the mount directory.
type mountPoint struct {
	dir string
	// existing is what is mounted there, nil if nothing.
	existing *mountInfo
}

// livenessTimeout bounds the stat that tells a live FUSE mount from a dead
// one: a daemon that is stopped (SIGSTOP) or wedged never answers.
const livenessTimeout = 5 * time.Second

// inspectMountPoint refuses a mount point that this daemon may not take
// over. It is called before the pool is opened, so a refusal creates
// nothing.
func inspectMountPoint(dir, poolDir string) (*mountPoint, error) {
	existing, err := findMount(dir)
	if err != nil || existing == nil {
		return &mountPoint{dir: dir}, err
	}
	mp := &mountPoint{dir: dir, existing: existing}
	if existing.FSType != rowfsFSType {
		return nil, fmt.Errorf("mount point %s is in use: %s is mounted there; rowfsd mounts only on an unused directory (choose another --mount, or unmount it yourself)", dir, existing)
	}
	if existing.Source == mountSource(poolDir) {
		// A mount of this pool: if its daemon lives it holds the pool
		// lock, and opening the pool will refuse; if the lock is free the
		// mount serves nothing and clearIfDead takes it. No stat: one on
		// the mount of a daemon still dying can wait in the kernel, and
		// keep this process from exiting.
		return mp, nil
	}
	switch err := statWithin(dir, livenessTimeout); {
	case errors.Is(err, syscall.ENOTCONN):
		return mp, nil // its daemon is dead
	case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		return nil, fmt.Errorf("mount point %s: a rowfs mount (%s) is there and stat gives %v; refusing to take it over", dir, existing.Source, err)
	case err != nil:
		return nil, fmt.Errorf("mount point %s: a rowfs mount (%s) is there and does not answer within %v (is its rowfsd stopped?); refusing to take it over", dir, existing.Source, livenessTimeout)
	default:
		return nil, fmt.Errorf("mount point %s is in use by a live rowfsd serving another pool (%s); choose another --mount", dir, strings.TrimPrefix(existing.Source, "rowfs:"))
	}
}

// clearIfDead detaches the dead rowfs mount inspectMountPoint found. The
// caller holds the pool lock, so a mount of this pool has no live daemon.
func (mp *mountPoint) clearIfDead(log *slog.Logger) error {
	if mp.existing == nil {
		return nil
	}
	log.Warn("clearing a dead rowfs mount left by a previous rowfsd", "mount", mp.dir, "source", mp.existing.Source)
	if err := syscall.Unmount(mp.dir, syscall.MNT_DETACH); err != nil {
		if out, ferr := exec.Command("fusermount3", "-u", "-z", mp.dir).CombinedOutput(); ferr != nil {
			return fmt.Errorf("%s is still mounted and could not be unmounted (%v; fusermount3: %s)", mp.dir, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// statWithin stats dir, giving up after timeout with os.ErrDeadlineExceeded
// (the stat goroutine is left to finish whenever the kernel answers).
func statWithin(dir string, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		_, err := os.Stat(dir)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return os.ErrDeadlineExceeded
	}
}

// findMount returns the topmost mount at dir, or nil.
func findMount(dir string) (*mountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found *mountInfo
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, at, ok := parseMountInfoLine(sc.Text()); ok && at == dir {
			found = &m // later lines are mounted over earlier ones
		}
	}
	return found, sc.Err()
}

// parseMountInfoLine reads the mount point, filesystem type and source of
// a mountinfo line: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3
// /dev/root rw,errors=continue" (proc(5)); optional fields end at "-".
func parseMountInfoLine(line string) (mountInfo, string, bool) {
	fields := strings.Fields(line)
	if len(fields) < 7 {
		return mountInfo{}, "", false
	}
	for i := 6; i+2 < len(fields); i++ {
		if fields[i] == "-" {
			return mountInfo{FSType: unescapeMountPath(fields[i+1]), Source: unescapeMountPath(fields[i+2])}, unescapeMountPath(fields[4]), true
		}
	}
	return mountInfo{}, "", false
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
