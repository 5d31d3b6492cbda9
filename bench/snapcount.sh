#!/bin/bash
# snapcount.sh: what keeping snapshots costs the disk. A fresh rowfsd on a
# scratch directory in /var/tmp serves two filled 1 GiB volumes, "flat"
# (never snapshotted) and "v". v gets snapshots one by one, each after 500
# random 4 KiB writes, up to 1, 16, 64 and 128 snapshots; at each count
# the head is rolled back to the newest snapshot before every fio job (so a
# write job measures first writes after a snapshot) and the same job runs
# on flat right before it. It prints IOPS on both, their ratio and
# rowfsd's resident memory.
#
# Needs bin/rowfsd and bin/rowctl (make build), fio and python3. Run it on
# an otherwise idle machine: bash bench/snapcount.sh [COUNTS…]
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$repo/bin} # BIN=DIR runs another build
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 16 64 128)
work=$(mktemp -d /var/tmp/rowfs-snapcount.XXXXXX)
mkdir -p "$work/mnt"
"$bin/rowfsd" --pool "$work/pool" --mount "$work/mnt" --socket "$work/sock" --log-level warn ${ROWFSD_ARGS:-} &
pid=$!
trap 'kill $pid; wait $pid; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -S "$work/sock" ] && break; sleep 0.2; done
ctl() { "$bin/rowctl" --socket "$work/sock" "$@" >/dev/null || exit 1; }
for v in flat v; do
	ctl volume create $v --size 1G
	fio --name=fill --filename="$work/mnt/$v" --rw=write --bs=1M --direct=1 --ioengine=libaio --iodepth=8 --size=1G --output=/dev/null || exit 1
done
iops() { # volume rw bs engine depth
	fio --name=j --filename="$work/mnt/$1" --rw="$2" --bs="$3" --ioengine="$4" --iodepth="$5" --direct=1 \
		--size=1G --time_based --runtime=4 --ramp_time=1 --output-format=json |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(int(j["write"]["iops"]+j["read"]["iops"]))'
}
rss() { awk '/VmRSS/{printf "%.1f MiB", $2/1024}' "/proc/$pid/status"; }
made=0
for want in "${counts[@]}"; do
	while [ $made -lt "$want" ]; do
		made=$((made + 1))
		fio --name=churn --filename="$work/mnt/v" --rw=randwrite --bs=4k --direct=1 --ioengine=psync \
			--size=1G --number_ios=500 --randseed=$made --output=/dev/null || exit 1
		ctl snapshot create "v@s$made"
	done
	for job in "randwrite 4k libaio 16" "randwrite 4k psync 1" "randread 4k libaio 16"; do
		set -- $job
		flat=$(iops flat "$@")
		ctl snapshot rollback "v@s$made" --force --yes
		snap=$(iops v "$@")
		echo "$made snapshots, $1 $2 $3 qd$4: flat $flat, after a snapshot $snap IOPS ($((snap * 100 / flat))%)"
	done
	ctl snapshot rollback "v@s$made" --force --yes
	echo "$made snapshots: rowfsd $(rss) resident"
done
