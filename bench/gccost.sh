#!/bin/bash
# gccost.sh: what the Go collector costs rowfsd under load, for choosing
# GOGC (docs/decisions.md). A fresh rowfsd on a scratch directory in
# /var/tmp serves a filled 4 GiB volume; after a snapshot each fio job runs
# 8 s at queue depth 16, and the script prints its IOPS, the collections
# it took (GODEBUG=gctrace=1) and rowfsd's CPU time.
#
# Needs bin/rowfsd and bin/rowctl (make build), fio and python3. Run it on
# an otherwise idle machine: bash bench/gccost.sh, or GOGC=100 bash
# bench/gccost.sh to compare with Go's default.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /var/tmp/rowfs-gccost.XXXXXX)
mkdir -p "$work/mnt"
GODEBUG=gctrace=1 "$repo/bin/rowfsd" --pool "$work/pool" --mount "$work/mnt" --socket "$work/sock" --log-level warn 2>"$work/err" &
pid=$!
trap 'kill $pid; wait $pid; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -S "$work/sock" ] && break; sleep 0.2; done
ctl() { "$repo/bin/rowctl" --socket "$work/sock" "$@" >/dev/null; }
ctl volume create v --size 4G
fio --name=fill --filename="$work/mnt/v" --rw=write --bs=1M --direct=1 --ioengine=libaio --iodepth=8 --size=4G --output=/dev/null
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; } # clock ticks
echo "GOGC=${GOGC:-unset, so 50}"
for job in "randwrite 4k" "write 1M" "randread 4k"; do
	set -- $job
	ctl snapshot create "v@s$1$2"
	gc0=$(grep -c '^gc ' "$work/err"); cpu0=$(cpu)
	iops=$(fio --name=j --filename="$work/mnt/v" --rw="$1" --bs="$2" --direct=1 --ioengine=libaio --iodepth=16 --runtime=8 --time_based --size=4G --output-format=json |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(int(j["write"]["iops"]+j["read"]["iops"]))')
	gc1=$(grep -c '^gc ' "$work/err"); cpu1=$(cpu)
	echo "$1 $2: $iops IOPS, $((gc1 - gc0)) collections, rowfsd CPU $(((cpu1 - cpu0) * 1000 / $(getconf CLK_TCK))) ms"
done
grep -E 'VmRSS|RssAnon' "/proc/$pid/status" | tr -s ' \n' ' '; echo
