package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// A job is one fio line of the matrix.
type job struct {
	rw, bs, engine string
	depth          int
	fsync          bool // fsync after every write
	sync           bool // O_SYNC writes: each durable before it returns
}

func (j job) name() string {
	kind := map[string]string{"randread": "randread", "randwrite": "randwrite", "read": "seqread", "write": "seqwrite"}[j.rw]
	s := fmt.Sprintf("%s %s %s qd%d", j.bs, kind, j.engine, j.depth)
	if j.fsync {
		s += " fsync=1"
	}
	if j.sync {
		s += " sync=1"
	}
	return s
}

func (j job) writes() bool { return strings.Contains(j.rw, "write") }

// unit: IOPS for small blocks, MiB/s for 1 MiB ones.
func (j job) unit() string {
	if j.bs == "1M" {
		return "MiB/s"
	}
	return "IOPS"
}

// jobs is the matrix of issue 5: each pattern with psync at queue depth 1
// and libaio at 16, and 4 KiB random writes with an fsync after each and
// on an O_SYNC descriptor (issue 13: no FSYNC reaches the daemon for those).
var jobs = func() []job {
	var js []job
	for _, p := range []struct{ rw, bs string }{
		{"randread", "4k"}, {"randwrite", "4k"}, {"randwrite", "64k"}, {"read", "1M"}, {"write", "1M"},
	} {
		js = append(js, job{rw: p.rw, bs: p.bs, engine: "psync", depth: 1}, job{rw: p.rw, bs: p.bs, engine: "libaio", depth: 16})
	}
	return append(js, job{rw: "randwrite", bs: "4k", engine: "psync", depth: 1, fsync: true},
		job{rw: "randwrite", bs: "4k", engine: "psync", depth: 1, sync: true})
}()

var prefill = job{rw: "write", bs: "1M", engine: "libaio", depth: 16}

// fio runs j on file for runtime seconds after ramp seconds of warm-up
// (runtime 0: one pass over size) and returns IOPS or MiB/s.
func fio(file string, j job, size int64, ramp, runtime float64) (float64, error) {
	args := []string{"--name=" + strings.ReplaceAll(j.name(), " ", "_"), "--filename=" + file,
		"--rw=" + j.rw, "--bs=" + j.bs, "--ioengine=" + j.engine, fmt.Sprintf("--iodepth=%d", j.depth),
		"--direct=1", fmt.Sprintf("--size=%d", size), "--invalidate=0", "--randrepeat=0", "--output-format=json"}
	if j.fsync {
		args = append(args, "--fsync=1")
	}
	if j.sync {
		args = append(args, "--sync=1")
	}
	if runtime > 0 {
		args = append(args, "--time_based", fmt.Sprintf("--runtime=%dms", int(runtime*1000)),
			fmt.Sprintf("--ramp_time=%dms", int(ramp*1000)))
	}
	out, err := exec.Command("fio", args...).Output()
	if err != nil {
		return 0, fmt.Errorf("fio %s: %v", strings.Join(args, " "), err)
	}
	var res struct {
		Jobs []struct {
			Read, Write struct {
				IOPS float64 `json:"iops"`
				BW   float64 `json:"bw"` // KiB/s
			}
		} `json:"jobs"`
	}
	if i := bytes.IndexByte(out, '{'); i >= 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) == 0 {
		return 0, fmt.Errorf("fio %s: unreadable output: %v", j.name(), err)
	}
	st := res.Jobs[0].Read
	if j.writes() {
		st = res.Jobs[0].Write
	}
	if j.unit() == "MiB/s" {
		return st.BW / 1024, nil
	}
	return st.IOPS, nil
}
