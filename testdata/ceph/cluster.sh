#!/usr/bin/env bash
# A real single-node Ceph cluster for tests, on 127.0.0.1, in one directory:
# one ceph-mon, one ceph-osd on memstore (data in the OSD's RAM), pool "rbd"
# of size 1, no mgr (RBD does not need one), no authentication; and with
# RGW=1 a radosgw (S3) on 127.0.0.1 with one user.
#
#   cluster.sh start DIR   # prints CEPH_CONF=DIR/ceph.conf and the time taken;
#                          # DIR/env exports CEPH_CONF and, with RGW=1,
#                          # ROWFS_RGW_ENDPOINT, _ACCESS_KEY, _SECRET_KEY
#   cluster.sh stop DIR    # kills the daemons, removes DIR, prints the time
#
# Needs Debian's ceph-mon, ceph-osd and ceph-common, and radosgw for RGW=1
# (make test installs them).
# Keep test images small: memstore holds every byte in memory.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
	echo "usage: $0 start|stop DIR" >&2
	exit 2
fi
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

case $cmd in
start)
	t0=$(now)
	mkdir -p "$dir"/{run,log,mon,osd}
	dir=$(cd "$dir" && pwd)
	port=${CEPH_PORT:-$((20000 + RANDOM % 20000))}
	fsid=$(cat /proc/sys/kernel/random/uuid)
	conf=$dir/ceph.conf
	cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
ms bind ipv4 = true
public network = 127.0.0.1/32
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 2147483648
paxos propose interval = 0.05
mon data avail warn = 1
mon data avail crit = 0
run dir = $dir/run
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id

# Admin sockets for the daemons only: clients (rbd, rowfsd) sharing one
# name would fight over it.
[mon]
admin socket = $dir/run/\$name.asok
[osd]
admin socket = $dir/run/\$name.asok
[client.rgw.a]
# radosgw asks for a secure mon connection by default, which needs cephx.
ms mon client mode = crc
admin socket = $dir/run/\$name.asok
rgw frontends = beast endpoint=127.0.0.1:$((port + 1))
rgw data = $dir/rgw
rgw enable usage log = false
rgw dns name = 127.0.0.1
CONF
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
	ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" >/dev/null
	ceph-mon -c "$conf" -i a
	osd_uuid=$(cat /proc/sys/kernel/random/uuid)
	id=$(ceph -c "$conf" --connect-timeout 20 osd new "$osd_uuid")
	mkdir -p "$dir/osd/ceph-$id"
	ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
	ceph-osd -c "$conf" -i "$id" >/dev/null 2>&1
	ceph -c "$conf" osd pool create rbd 8 >/dev/null 2>&1
	# Without a mgr there are no PG statistics to wait on: the pool's first
	# object (written by pool init) proves its placement groups are active.
	if ! timeout 60 rbd -c "$conf" pool init rbd; then
		echo "ceph: pool rbd not usable after 60 s; logs in $dir/log" >&2
		ceph -c "$conf" --connect-timeout 5 -s >&2 || true
		exit 1
	fi
	echo "export CEPH_CONF=$conf" >"$dir/env"
	rgw=""
	if [[ ${RGW:-} == 1 ]]; then
		mkdir -p "$dir/rgw"
		radosgw -c "$conf" -n client.rgw.a >/dev/null 2>&1
		for _ in $(seq 300); do
			(exec 3<>/dev/tcp/127.0.0.1/$((port + 1))) 2>/dev/null && break
			sleep 0.1
		done
		if ! (exec 3<>/dev/tcp/127.0.0.1/$((port + 1))) 2>/dev/null; then
			echo "ceph: radosgw not answering after 30 s; logs in $dir/log" >&2
			exit 1
		fi
		radosgw-admin -c "$conf" user create --uid=rowfs --display-name=rowfs-tests \
			--access-key=ROWFSTESTACCESSKEY --secret-key=rowfs-test-secret-key >/dev/null
		cat >>"$dir/env" <<ENV
export ROWFS_RGW_ENDPOINT=127.0.0.1:$((port + 1))
export ROWFS_RGW_ACCESS_KEY=ROWFSTESTACCESSKEY
export ROWFS_RGW_SECRET_KEY=rowfs-test-secret-key
ENV
		rgw=", radosgw on 127.0.0.1:$((port + 1))"
	fi
	echo "ceph: cluster up in $(elapsed "$t0") s (mon v2:127.0.0.1:$port, osd.$id on memstore, pool rbd$rgw)"
	echo "CEPH_CONF=$conf"
	;;
stop)
	t0=$(now)
	[[ -d $dir ]] || exit 0
	for pid in "$dir"/run/*.pid; do
		[[ -e $pid ]] && kill -9 "$(cat "$pid")" 2>/dev/null || true
	done
	rm -rf "$dir"
	echo "ceph: cluster stopped and removed in $(elapsed "$t0") s"
	;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac
