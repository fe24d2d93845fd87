#!/bin/sh
# Runs a guest on QEMU like qemu.sh, plus virtio-mmio version 2 devices:
# a raw disk (virtio-blk, serial "ftvm-disk0") and user networking
# (virtio-net; guest 10.0.2.15, gateway 10.0.2.2) with UDP port forwards.
#
# Usage: guests/qemu-io.sh [-d disk.img] [-f hostfwd]... guest.elf [qemu args...]
#   -d IMG   attach IMG (raw) as the disk; QEMU writes to it, so pass a copy
#   -f RULE  a hostfwd rule, e.g. udp:127.0.0.1:5353-:53 (implies a NIC)
#   -n       a NIC without forwards
# The disk is added first, so QEMU puts it in the highest virtio-mmio slot
# (7, IRQ 8) and the NIC in slot 6 (IRQ 7); guests probe all slots anyway.
set -eu
here=$(dirname "$0")
disk="" fwd="" nic=""
while getopts d:f:n opt; do
  case $opt in
    d) disk=$OPTARG ;;
    f) fwd="$fwd,hostfwd=$OPTARG" nic=1 ;;
    n) nic=1 ;;
    *) echo "usage: $0 [-d disk.img] [-f hostfwd]... guest.elf [qemu args...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
elf=$1
shift
set -- -global virtio-mmio.force-legacy=false "$@"
if [ -n "$disk" ]; then
  set -- "$@" -drive "file=$disk,if=none,format=raw,id=d0" \
    -device virtio-blk-device,drive=d0,serial=ftvm-disk0
fi
if [ -n "$nic" ]; then
  set -- "$@" -netdev "user,id=n0$fwd" -device virtio-net-device,netdev=n0
fi
exec "$here/qemu.sh" "$elf" "$@"
