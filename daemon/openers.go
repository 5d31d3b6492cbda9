package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/rowfs/rowfs/rowengine"
)

// opener is a process holding a file on the mount open.
type opener struct {
	pid  int
	comm string // its command name (/proc/PID/comm)
}

func (o opener) String() string { return fmt.Sprintf("%d (%s)", o.pid, o.comm) }

// openersUnder finds which processes hold which files under dir open, by
// the links in /proc/*/fd: the kernel answers them without asking the
// mount, so this never waits on our own FUSE server. Processes that end
// or hide their fds (another user's, without root) are skipped.
func openersUnder(dir string) map[string][]opener {
	procs, _ := os.ReadDir("/proc")
	found := map[string][]opener{}
	prefix := dir + "/"
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, _ := os.ReadDir(fdDir)
		seen := map[string]bool{}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(target, prefix) || seen[target] {
				continue
			}
			seen[target] = true
			comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
			rel := strings.TrimPrefix(target, prefix)
			found[rel] = append(found[rel], opener{pid: pid, comm: strings.TrimSpace(string(comm))})
		}
	}
	return found
}

// logOpenVolumes says, at shutdown, which volumes are still open and by
// which processes: the unmount then detaches lazily and the daemon waits
// until they close them, which an operator stopping a host with a VM
// running needs to know (systemd's TimeoutStopSec ends the wait).
func logOpenVolumes(vols []rowengine.VolumeInfo, mountDir string, log *slog.Logger) {
	var open []string
	handles := map[string]int{}
	for _, v := range vols {
		if v.OpenHandles > 0 {
			open = append(open, v.Name)
			handles[v.Name] = v.OpenHandles
		}
	}
	if len(open) == 0 {
		return
	}
	sort.Strings(open)
	byFile := openersUnder(mountDir)
	for _, name := range open {
		var who []string
		for _, o := range byFile[name] {
			who = append(who, o.String())
		}
		if len(who) == 0 {
			who = []string{"unknown processes"}
		}
		log.Warn("volume still open at shutdown", "volume", name, "handles", handles[name], "pids", strings.Join(who, ", "))
	}
	log.Warn("waiting for open volumes to be closed before the unmount completes; stop their VMs, or the service manager ends the wait (TimeoutStopSec)",
		"volumes", strings.Join(open, ", "))
}
