#!/bin/sh
# Builds the DNS guest's disk image from a zone text file: the text itself,
# then zeros up to 64 KiB. The guest reads the disk up to the first NUL
# byte, so the text must contain none and must be shorter than 64 KiB.
#
# Usage: guests/dns/mkzone.sh [zone.txt [zone.img]]   (default: beside this script)
set -eu
dir=$(dirname "$0")
src=${1:-$dir/zone.txt}
img=${2:-$dir/zone.img}
size=$(wc -c <"$src")
if [ "$size" -ge 65536 ]; then
  echo "mkzone.sh: $src is $size bytes; the limit is 65535" >&2
  exit 1
fi
if [ "$(tr -d '\000' <"$src" | wc -c)" -ne "$size" ]; then
  echo "mkzone.sh: $src contains a NUL byte" >&2
  exit 1
fi
cp "$src" "$img.tmp"
truncate -s 64K "$img.tmp"
mv "$img.tmp" "$img"
echo "wrote $img ($size bytes of zone text)"
