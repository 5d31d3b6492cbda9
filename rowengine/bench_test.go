package rowengine

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkReadAt4K: random 4 KiB reads of a volume whose blocks are all
// written (the page cache serves the data file, so this is the engine's cost).
func BenchmarkReadAt4K(b *testing.B) {
	p := TestPool(b, Options{BlockSize: 64 << 10})
	p.CreateVolume("v", 256<<20)
	h, _ := p.OpenVolume("v", true)
	defer h.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < 256<<20; off += 1 << 20 {
		h.WriteAt(buf, off)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for range b.N {
		h.ReadAt(buf[:4096], rng.Int64N(256<<20/4096)*4096)
	}
}

// BenchmarkWrite4K compares an in-place overwrite with a redirect (first
// write to a block of a fresh volume).
func BenchmarkWrite4K(b *testing.B) {
	for _, mode := range []string{"in-place", "redirect"} {
		b.Run(mode, func(b *testing.B) {
			p := TestPool(b, Options{BlockSize: 64 << 10, CommitBatch: 1 << 30})
			p.CreateVolume("v", 64<<30)
			h, _ := p.OpenVolume("v", true)
			defer h.Close()
			data := make([]byte, 4096)
			if mode == "in-place" {
				h.WriteAt(data, 0)
			}
			b.ResetTimer()
			for i := range b.N {
				off := int64(0)
				if mode == "redirect" {
					off = int64(i) * (64 << 10) % (64 << 30)
				}
				if _, err := h.WriteAt(data, off); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			h.Close()
			p.DeleteVolume("v", true)
		})
	}
}

// BenchmarkCommit: a guest fsync after N redirects.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p := TestPool(b, Options{BlockSize: 4096, CommitBatch: 1 << 30})
			p.CreateVolume("v", 1<<40)
			h, _ := p.OpenVolume("v", true)
			defer h.Close()
			data := make([]byte, 4096)
			next := int64(0)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for range n {
					h.WriteAt(data, next)
					next += 4096
				}
				b.StartTimer()
				if err := h.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// chainPool is a 256 MiB volume whose blocks were written spread over
// depth snapshots (block i in snapshot i mod depth), plus the head.
func chainPool(b *testing.B, depth int) (*Pool, *Handle) {
	p := TestPool(b, Options{BlockSize: 64 << 10, MaxSnapshots: MaxChainLimit})
	p.CreateVolume("v", 256<<20)
	h, _ := p.OpenVolume("v", true)
	b.Cleanup(func() { h.Close() })
	buf := make([]byte, 64<<10)
	const blocks = 256 << 20 / (64 << 10)
	for layer := range depth {
		for i := layer; i < blocks; i += depth {
			h.WriteAt(buf, int64(i)<<16)
		}
		if _, err := p.CreateSnapshot("v", fmt.Sprintf("s%d", layer), SnapshotOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return p, h
}

// BenchmarkReadChainDepth: random 4 KiB reads at chain depth 1, 32 and
// 128. The resolved tables make the cost independent of depth.
func BenchmarkReadChainDepth(b *testing.B) {
	for _, depth := range []int{1, 32, 128} {
		b.Run(fmt.Sprint(depth), func(b *testing.B) {
			_, h := chainPool(b, depth)
			buf := make([]byte, 4096)
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for range b.N {
				h.ReadAt(buf, rng.Int64N(256<<20/4096)*4096)
			}
		})
	}
}

// BenchmarkSnapshotCreate: one snapshot of a 256 MiB volume with one
// changed block, commit included. Runs of more than MaxChainLimit
// iterations hit the chain limit (-benchtime 1s stays far below).
func BenchmarkSnapshotCreate(b *testing.B) {
	p, h := chainPool(b, 1)
	data := make([]byte, 4096)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		h.WriteAt(data, int64(i%4096)<<16)
		b.StartTimer()
		if _, err := p.CreateSnapshot("v", fmt.Sprintf("b%d", i), SnapshotOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeletePlan: the dry run of deleting a snapshot that owns 256
// MiB, half of it overwritten by the child (merge planning).
func BenchmarkDeletePlan(b *testing.B) {
	p, h := chainPool(b, 1)
	buf := make([]byte, 64<<10)
	for i := 0; i < 256<<20/(64<<10); i += 2 {
		h.WriteAt(buf, int64(i)<<16)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := p.DeleteSnapshot("v", "s0", DeleteOptions{DryRun: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFirstWrite1M: 1 MiB sequential writes into a filled volume,
// flat (in place) and right after a snapshot (every block redirected).
func BenchmarkFirstWrite1M(b *testing.B) {
	for _, after := range []bool{false, true} {
		name := "flat"
		if after {
			name = "after-snapshot"
		}
		b.Run(name, func(b *testing.B) {
			const size = 256 << 20
			p := TestPool(b, Options{BlockSize: 64 << 10, CommitInterval: time.Second})
			h := mustCreate(b, p, "v", size)
			defer h.Close()
			buf := make([]byte, 1<<20)
			for off := int64(0); off < size; off += 1 << 20 {
				h.WriteAt(buf, off)
			}
			h.Sync()
			b.SetBytes(1 << 20)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := int64(i%(size>>20)) << 20
				if after && off == 0 {
					b.StopTimer()
					if _, err := p.CreateSnapshot("v", fmt.Sprintf("s%d", i), SnapshotOptions{}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if _, err := h.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
