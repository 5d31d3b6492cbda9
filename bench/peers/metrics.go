package main

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

// metricsCost is what serving Prometheus metrics costs the I/O path: 4 KiB
// random reads at queue depth 16 on two daemons, alike but for --metrics
// (scraped every second, 15 times as often as Prometheus's default),
// round by round.
type metricsCost struct {
	off, on []float64 // IOPS per round
}

// goalMetricsCost is issue 18's bound on the metrics' cost.
const goalMetricsCost = 0.02

var metricsJob = job{rw: "randread", bs: "4k", engine: "libaio", depth: 16}

func (b *bench) metricsCost(rounds int, ramp, runtime float64) metricsCost {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := ln.Addr().String()
	ln.Close()
	files := map[bool]string{}
	for _, on := range []bool{false, true} {
		name, extra := "metrics-off", []string{}
		if on {
			name, extra = "metrics-on", []string{"--metrics", addr}
		}
		d := b.startRowfsd(name, extra...)
		defer os.RemoveAll(b.path(name + "-pool"))
		defer d.stop()
		_, err := d.client.CreateVolume(context.Background(), api.CreateVolumeRequest{Name: "vol", Size: uint64(b.size)})
		check(err)
		files[on] = filepath.Join(d.mount, "vol")
		_, err = fio(files[on], prefill, b.size, 0, 0)
		check(err)
	}
	stopScrape := make(chan struct{})
	defer close(stopScrape)
	go func() {
		for {
			select {
			case <-stopScrape:
				return
			case <-time.After(time.Second):
			}
			if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	var c metricsCost
	for round := range rounds {
		for _, on := range []bool{false, true} {
			iops, err := fio(files[on], metricsJob, b.size, ramp, runtime)
			check(err)
			if on {
				c.on = append(c.on, iops)
			} else {
				c.off = append(c.off, iops)
			}
			log.Printf("metrics round %d, metrics %v: %.0f IOPS", round+1, on, iops)
		}
	}
	return c
}

func (r *report) metricsTable(w func(string, ...any)) {
	off, on := median(r.metrics.off), median(r.metrics.on)
	cost := 1 - on/off
	w("## Cost of the metrics\n\n%s on two rowfsd, one serving `--metrics` (scraped every second), medians of %d interleaved rounds.\n\n",
		metricsJob.name(), len(r.metrics.off))
	w("| metrics off | metrics on | cost | goal (≤ %.0f%%) |\n|---:|---:|---:|---|\n", goalMetricsCost*100)
	w("| %.0f IOPS | %.0f IOPS | %.1f%% | %s |\n\n", off, on, cost*100, verdict(cost <= goalMetricsCost))
}
