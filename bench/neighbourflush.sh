#!/bin/bash
# neighbourflush.sh: does one VM's flush wait for another's data? A fresh
# rowfsd on a scratch directory in /var/tmp serves two filled 2 GiB
# volumes, a and b. fio writes 4 KiB at random on a with an fsync after
# each write, once alone and once right after b was overwritten whole
# (2 GiB in place, never flushed), twice over. It prints a's IOPS and its
# fsync latency (p99 and worst): with one pool data file, a's first fsync
# must not write back b's dirty pages (rowengine/flush.go).
#
# Needs bin/rowfsd and bin/rowctl (make build), fio and python3:
# bash bench/neighbourflush.sh (BIN=DIR runs another build)
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$repo/bin}
work=$(mktemp -d /var/tmp/rowfs-neighbour.XXXXXX)
mkdir -p "$work/mnt"
"$bin/rowfsd" --pool "$work/pool" --mount "$work/mnt" --socket "$work/sock" --log-level warn &
pid=$!
trap 'kill $pid; wait $pid; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -S "$work/sock" ] && break; sleep 0.2; done
fill() { fio --name=fill --filename="$work/mnt/$1" --rw=write --bs=1M --direct=1 --ioengine=libaio --iodepth=8 --size=2G --output=/dev/null || exit 1; }
for v in a b; do
	"$bin/rowctl" --socket "$work/sock" volume create $v --size 2G >/dev/null || exit 1
	fill $v
done
sync
flushes() {
	fio --name=j --filename="$work/mnt/a" --rw=randwrite --bs=4k --ioengine=psync --direct=1 --size=1G \
		--time_based --runtime=3 --ramp_time=0.5 --fsync=1 --output-format=json |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; s=j["sync"]["lat_ns"]
print("%d IOPS, fsync p99 %.2f ms, worst %.1f ms" % (j["write"]["iops"], s["percentile"]["99.000000"]/1e6, s["max"]/1e6))'
}
for _ in 1 2; do
	echo "a alone: $(flushes)"
	fill b
	echo "a right after b wrote 2 GiB in place: $(flushes)"
done
