package rowengine

import (
	"fmt"
	"math/rand/v2"
	"testing"
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
