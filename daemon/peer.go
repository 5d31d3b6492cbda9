package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/rowfs/rowfs/ctl/api"
)

type peerKey struct{}

// peerCred records the connecting process's credentials (SO_PEERCRED)
// in the request context.
func peerCred(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// peerPolicy says who may use the control socket.
type peerPolicy struct {
	uids []int // besides root and the daemon's own user
	gids []int // the socket group and the configured gids
}

func (p peerPolicy) allows(cred *unix.Ucred) bool {
	uid, gid := int(cred.Uid), int(cred.Gid)
	if uid == 0 || uid == os.Getuid() || slices.Contains(p.uids, uid) || slices.Contains(p.gids, gid) {
		return true
	}
	for _, g := range supplementaryGroups(int(cred.Pid)) {
		if slices.Contains(p.gids, g) {
			return true
		}
	}
	return false
}

// supplementaryGroups reads a live process's groups from /proc.
func supplementaryGroups(pid int) []int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			var out []int
			for _, f := range strings.Fields(rest) {
				if g, err := strconv.Atoi(f); err == nil {
					out = append(out, g)
				}
			}
			return out
		}
	}
	return nil
}

// checkPeer refuses requests from processes the policy does not allow,
// whatever the socket file's permissions let through.
func (p peerPolicy) checkPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := r.Context().Value(peerKey{}).(*unix.Ucred)
		if cred == nil || !p.allows(cred) {
			who := "an unidentified peer"
			if cred != nil {
				who = fmt.Sprintf("uid %d (gid %d)", cred.Uid, cred.Gid)
			}
			writeError(w, http.StatusForbidden, api.CodeForbidden,
				who+" may not use this rowfsd: allowed are root, the socket group, and allowed_uids/allowed_gids in its config")
			return
		}
		next.ServeHTTP(w, r)
	})
}
