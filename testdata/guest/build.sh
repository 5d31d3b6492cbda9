#!/bin/bash
# build.sh OUT: a tiny Linux guest for the end-to-end tests, from Debian's
# packages (downloaded, never installed): OUT/vmlinuz and OUT/initrd.gz.
# The initramfs holds busybox, the qemu guest agent (with the host's
# copies of its libraries) and the virtio modules; its /init mounts the
# virtio disks as ext4 (vda at /data, vdb at /logs), starts the guest
# agent on the org.qemu.guest_agent.0 port and writes numbered records to
# both disks, printing progress on the serial console.
set -euo pipefail
out=$1
mkdir -p "$out/debs"
cd "$out/debs"
kernel=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kernel" ] || { echo "build.sh: no linux-image-cloud-amd64 in apt's lists (apt-get update?)" >&2; exit 1; }
for p in "$kernel" busybox-static qemu-guest-agent; do
	ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q "$p" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
	ls "${p}"_*.deb >/dev/null
done
cd "$out"
rm -rf x root && mkdir -p x root/{bin,dev,proc,sys,data,logs,run,tmp,lib/modules,lib64}
for d in debs/*.deb; do dpkg-deb -x "$d" x; done
cp x/boot/vmlinuz-* vmlinuz
cp x/bin/busybox root/bin/busybox
cp x/usr/sbin/qemu-ga root/bin/qemu-ga
# The agent's libraries, as the host has them (qemu-system-x86 needs the same).
ldd x/usr/sbin/qemu-ga | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
	mkdir -p "root$(dirname "$lib")"
	cp -L "$lib" "root$lib"
done
if ldd x/usr/sbin/qemu-ga | grep -q 'not found'; then
	echo "build.sh: the host lacks libraries of qemu-ga:" >&2
	ldd x/usr/sbin/qemu-ga | grep 'not found' >&2
	exit 1
fi
mods=$(ls -d x/lib/modules/*)
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev \
	drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci drivers/block/virtio_blk drivers/char/virtio_console; do
	cp "$mods/kernel/$m.ko" root/lib/modules/
done
cat > root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio_console; do
	insmod /lib/modules/$m.ko
done
for i in $(seq 100); do [ -b /dev/vdb ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /data && mount -t ext4 /dev/vdb /logs || { echo GUEST-FAILED mount; poweroff -f; }
port=
for p in /sys/class/virtio-ports/*; do
	[ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/$(basename $p)
done
[ -n "$port" ] || { echo GUEST-FAILED no guest agent port; poweroff -f; }
qemu-ga -m virtio-serial -p "$port" -t /run -f /run/qemu-ga.pid -l /run/qemu-ga.log &
echo GUEST-READY
n=0
while :; do
	n=$((n + 1))
	echo "record $n" >> /data/records
	echo "record $n" >> /logs/records
	[ $((n % 5000)) = 0 ] && echo "GUEST-WROTE $n"
done
INIT
chmod +x root/init
(cd root && find . | cpio -o -H newc --quiet | gzip -1) > initrd.gz
rm -rf x
echo "$out/vmlinuz $out/initrd.gz"
