#!/bin/bash
# firstwrite.sh: a diagnostic for the first writes after a snapshot, apart
# from the bench's sequence of targets (docs/benchmarks.md, "What does not
# explain it"). A fresh rowfsd on a scratch directory in /var/tmp serves a
# flat volume and one with a snapshot, both filled; each round runs fio 1M
# psync writes on both, quiet and after 6 GiB were allocated and freed,
# with a rollback before every run on the snapshotted volume.
#
# Needs bin/rowfsd and bin/rowctl (make build), fio and python3. Run it on
# an otherwise idle machine: bash bench/firstwrite.sh
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /var/tmp/rowfs-firstwrite-XXXXXX)
mkdir -p "$W/mnt"
"$repo/bin/rowfsd" --pool "$W/pool" --mount "$W/mnt" --socket "$W/sock" --log-level warn &
PID=$!
trap 'kill $PID; wait $PID; rm -rf "$W"' EXIT
for _ in $(seq 100); do [ -S "$W/sock" ] && break; sleep 0.1; done
C=("$repo/bin/rowctl" --socket "$W/sock")
for v in flat v; do
	"${C[@]}" volume create $v --size 1G >/dev/null || exit 1
	fio --name=fill --filename="$W/mnt/$v" --rw=write --bs=1M --ioengine=libaio --iodepth=16 --direct=1 --size=1G --output-format=terse >/dev/null || exit 1
done
"${C[@]}" snapshot create v@s1 >/dev/null || exit 1
rollback() { "${C[@]}" snapshot rollback v@s1 --force --yes >/dev/null; }
run() {
	fio --name=j --filename="$W/mnt/$1" --rw=write --bs=1M --ioengine=psync --direct=1 --size=1G \
		--time_based --runtime=2500ms --ramp_time=500ms --output-format=json |
		python3 -c 'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024), "MiB/s")'
}
churn() { python3 -c 'b = bytearray(6 << 30); b[::4096] = b"x" * ((6 << 30) // 4096)'; sleep 3; }
for round in 1 2; do
	flat=$(run flat)
	rollback
	echo "round $round quiet:          flat $flat   after a snapshot $(run v)"
	churn
	flat=$(run flat)
	rollback
	churn
	echo "round $round after 6G freed: flat $flat   after a snapshot $(run v)"
done
