package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rowfs/rowfs/ctl/api"
)

// TestPartlyWrittenBlocksThroughMount: on a pool of 64 KiB blocks, qemu-io
// writes 512-byte and 4 KiB patterns (aligned, unaligned, across block
// boundaries, write-zeroes) after each of four snapshots, with O_DIRECT
// and through the page cache, and the same to a reference file. The
// volume and every .snapshots/ file read back as their references
// (qemu-img compare); deleting the middle snapshots, whose partly written
// blocks their children read, changes nothing; restarting the daemon
// (masks read back from the pool) changes nothing; fsck passes. The
// first writes after the first snapshot grow the sparse data file by the
// sectors written, not by whole blocks.
func TestPartlyWrittenBlocksThroughMount(t *testing.T) {
	requireE2E(t, "qemu-io", "qemu-img")
	e := newEnv(t)
	d := e.start()
	vol := createVolume(t, e.sock, "vm", "16M")
	ref := filepath.Join(t.TempDir(), "ref.raw")
	runCmd(t, "qemu-img", "create", "-q", "-f", "raw", ref, "16M")
	both := func(cache string, cmds ...string) {
		t.Helper()
		qemuIO(t, vol, cache, cmds...)
		qemuIO(t, ref, cache, cmds...)
	}
	both("none", "write -P 1 0 16M")
	rnd := rand.New(rand.NewPCG(3, 4))
	refs := map[string]string{}
	compareAll := func(step string) {
		t.Helper()
		t.Log(step)
		runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", vol, ref)
		for name, r := range refs {
			runCmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(e.mnt, ".snapshots", "vm", name), r)
		}
	}
	for round := range 4 {
		name := fmt.Sprintf("s%d", round)
		mustRowctl(t, e.sock, "snapshot", "create", "vm@"+name)
		refs[name] = filepath.Join(t.TempDir(), name+".raw")
		runCmd(t, "cp", "--sparse=always", ref, refs[name])
		var cmds []string
		for i := range 40 {
			pat := 10*round + i%9 + 2
			block := rnd.IntN(256) << 16
			switch i % 5 {
			case 0: // one 4 KiB sector
				cmds = append(cmds, fmt.Sprintf("write -P %d %d 4k", pat, block+rnd.IntN(16)<<12))
			case 1: // 512 bytes inside a sector
				cmds = append(cmds, fmt.Sprintf("write -P %d %d 512", pat, block+rnd.IntN(128)<<9))
			case 2: // 1.5 KiB straddling two sectors
				cmds = append(cmds, fmt.Sprintf("write -P %d %d 1536", pat, block+(rnd.IntN(15)<<12)+3584))
			case 3: // 8 KiB across a block boundary
				if block > 0 {
					cmds = append(cmds, fmt.Sprintf("write -P %d %d 8k", pat, block-4096))
				}
			case 4: // write zeroes over part of a block
				cmds = append(cmds, fmt.Sprintf("write -z %d 4k", block+rnd.IntN(16)<<12))
			}
		}
		half := len(cmds) / 2
		before := dataOnDisk(t, e.pool)
		both("none", cmds[:half]...)
		both("writeback", cmds[half:]...)
		if grown := dataOnDisk(t, e.pool) - before; round == 0 && grown > 1<<20 {
			// Whole-block copies would add 40 × 64–128 KiB, some 3 MiB; the
			// sectors written (at most 8 KiB a write) well under 1 MiB.
			t.Errorf("40 small writes after the first snapshot grew the data file by %d bytes, want under 1 MiB", grown)
		} else {
			t.Logf("round %d: the data file grew by %d KiB", round, grown>>10)
		}
		// The head's size counts the sectors it holds, as the data file does.
		var v api.Volume
		rowctlJSON(t, e.sock, &v, "volume", "info", "vm")
		if round == 0 && (v.UsedBytes == 0 || v.UsedBytes > 1<<20) {
			t.Errorf("after 40 small writes the head is said to hold %d bytes, want the sectors written (under 1 MiB)", v.UsedBytes)
		}
		compareAll(fmt.Sprintf("round %d", round))
	}

	mustRowctl(t, e.sock, "snapshot", "delete", "vm@s1")
	mustRowctl(t, e.sock, "snapshot", "delete", "vm@s2")
	delete(refs, "s1")
	delete(refs, "s2")
	compareAll("after deleting s1 and s2")

	d.stop()
	e.start()
	compareAll("after a restart")
	if r := rowctl(t, e.sock, "fsck"); r.code != 0 {
		t.Fatalf("fsck: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// dataOnDisk is the bytes the pool's data file occupies (it is sparse).
func dataOnDisk(t *testing.T, pool string) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(pool, "data"))
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}
