// Command fiobench runs fio against a rowfs volume and against the go-fuse
// passthrough of a raw file, interleaved (A B A B ...), and reports the
// median of each line with the rowfs/passthrough ratio. It writes the
// table to bench/results/<date>-<host>.md.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type job struct {
	name, rw, bs, engine string
	depth                int
}

var jobs = []job{
	{"4k randread psync qd1", "randread", "4k", "psync", 1},
	{"4k randread libaio qd16", "randread", "4k", "libaio", 16},
	{"4k randwrite psync qd1", "randwrite", "4k", "psync", 1},
	{"4k randwrite libaio qd16", "randwrite", "4k", "libaio", 16},
	{"1M seqread libaio qd16", "read", "1M", "libaio", 16},
	{"1M seqwrite libaio qd16", "write", "1M", "libaio", 16},
}

type target struct {
	name, file string
	stop       func()
}

func main() {
	bin := flag.String("bin", "bin", "directory with rowfsd, rowctl and passthrough")
	rounds := flag.Int("rounds", 3, "interleaved rounds; medians are reported")
	runtimeSec := flag.Int("runtime", 8, "seconds per fio run")
	size := flag.String("size", "1G", "working set per target")
	out := flag.String("out", "bench/results", "results directory")
	flag.Parse()

	work, err := os.MkdirTemp("", "rowfs-bench-")
	check(err)
	defer os.RemoveAll(work)
	targets := []target{startRowfs(*bin, work, *size), startPassthrough(*bin, work, *size)}
	defer func() {
		for _, t := range targets {
			t.stop()
		}
	}()
	for _, t := range targets { // lay the data down so reads hit written blocks
		fio(t.file, job{"prefill", "write", "1M", "libaio", 16}, *size, 0)
	}
	results := map[string]map[string][]float64{} // job → target → values
	for r := range *rounds {
		for _, j := range jobs {
			for _, t := range targets {
				v := fio(t.file, j, *size, *runtimeSec)
				if results[j.name] == nil {
					results[j.name] = map[string][]float64{}
				}
				results[j.name][t.name] = append(results[j.name][t.name], v)
				log.Printf("round %d %-26s %-12s %10.0f", r+1, j.name, t.name, v)
			}
		}
	}
	report := render(results, targets, *rounds, *runtimeSec)
	fmt.Print(report)
	check(os.MkdirAll(*out, 0o755))
	host, _ := os.Hostname()
	path := filepath.Join(*out, time.Now().UTC().Format("2006-01-02")+"-"+host+".md")
	check(os.WriteFile(path, []byte(report), 0o644))
	log.Printf("wrote %s", path)
}

func render(results map[string]map[string][]float64, targets []target, rounds, runtimeSec int) string {
	var b strings.Builder
	fioVer, _ := exec.Command("fio", "--version").Output()
	kernel, _ := exec.Command("uname", "-r").Output()
	cpu := cpuModel()
	fmt.Fprintf(&b, "# rowfs fio benchmark, %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- machine: %d cores, %s, kernel %s", runtime.NumCPU(), cpu, kernel)
	fmt.Fprintf(&b, "- %s, %s; %d interleaved rounds of %d s per line; medians; O_DIRECT; volume pre-filled\n",
		strings.TrimSpace(string(fioVer)), runtime.Version(), rounds, runtimeSec)
	fmt.Fprintf(&b, "- rowfs: flat volume, 64 KiB blocks; passthrough: bench/passthrough (same go-fuse settings, no block map)\n\n")
	fmt.Fprintf(&b, "| job | unit | rowfs | passthrough | rowfs / passthrough |\n|---|---|---:|---:|---:|\n")
	for _, j := range jobs {
		unit := "IOPS"
		if j.bs == "1M" {
			unit = "MiB/s"
		}
		a, p := median(results[j.name][targets[0].name]), median(results[j.name][targets[1].name])
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %.0f%% |\n", j.name, unit, a, p, 100*a/p)
	}
	return b.String()
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// fio runs one job and returns IOPS (4k) or MiB/s (1M).
func fio(file string, j job, size string, seconds int) float64 {
	args := []string{"--name=" + strings.ReplaceAll(j.name, " ", "_"), "--filename=" + file, "--rw=" + j.rw, "--bs=" + j.bs,
		"--ioengine=" + j.engine, fmt.Sprintf("--iodepth=%d", j.depth), "--direct=1", "--size=" + size,
		"--invalidate=0", "--randrepeat=0", "--output-format=json"}
	if seconds > 0 {
		args = append(args, "--time_based", fmt.Sprintf("--runtime=%d", seconds))
	}
	outb, err := exec.Command("fio", args...).Output()
	if err != nil {
		log.Fatalf("fio %v: %v", args, err)
	}
	var res struct {
		Jobs []struct {
			Read, Write struct {
				IOPS float64 `json:"iops"`
				BW   float64 `json:"bw"` // KiB/s
			}
		} `json:"jobs"`
	}
	check(json.Unmarshal(outb[bytes.IndexByte(outb, '{'):], &res))
	st := res.Jobs[0].Read
	if strings.Contains(j.rw, "write") {
		st = res.Jobs[0].Write
	}
	if j.bs == "1M" {
		return st.BW / 1024
	}
	return st.IOPS
}

func startRowfs(bin, work, size string) target {
	sock, mnt := filepath.Join(work, "rowfs.sock"), filepath.Join(work, "rowfs-mnt")
	notifyPath := filepath.Join(work, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	check(err)
	defer notify.Close()
	cmd := exec.Command(filepath.Join(bin, "rowfsd"), "--pool", filepath.Join(work, "pool"), "--mount", mnt, "--socket", sock, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	notify.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 256)
	_, err = notify.Read(buf)
	check(err)
	out, err := exec.Command(filepath.Join(bin, "rowctl"), "--socket", sock, "volume", "create", "bench", "--size", size).CombinedOutput()
	if err != nil {
		log.Fatalf("rowctl: %v %s", err, out)
	}
	return target{name: "rowfs", file: filepath.Join(mnt, "bench"), stop: stopper(cmd)}
}

func startPassthrough(bin, work, size string) target {
	backing, mnt := filepath.Join(work, "passthrough.raw"), filepath.Join(work, "pt-mnt")
	check(os.MkdirAll(mnt, 0o755))
	out, err := exec.Command("truncate", "-s", size, backing).CombinedOutput()
	if err != nil {
		log.Fatalf("truncate: %v %s", err, out)
	}
	cmd := exec.Command(filepath.Join(bin, "passthrough"), "--file", backing, "--mount", mnt)
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
	return target{name: "passthrough", file: filepath.Join(mnt, "disk.img"), stop: stopper(cmd)}
}

func stopper(cmd *exec.Cmd) func() {
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
