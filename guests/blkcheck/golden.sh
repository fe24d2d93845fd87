#!/bin/sh
# Records blkcheck's golden (expected.txt, expected-exit) on QEMU, like
# guests/golden.sh but with a fresh all-zero 1 MiB disk for each of the two
# runs, which must agree byte for byte.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for run in 1 2; do
  truncate -s 1M "$tmp/disk$run.img"
  set +e
  timeout 60 ../qemu-io.sh -d "$tmp/disk$run.img" blkcheck.elf </dev/null >"$tmp/out$run" 2>"$tmp/err$run"
  echo $? >"$tmp/rc$run"
  set -e
done
if ! cmp -s "$tmp/out1" "$tmp/out2" || ! cmp -s "$tmp/rc1" "$tmp/rc2" || [ -s "$tmp/err1" ]; then
  echo "blkcheck/golden.sh: runs differ or wrote to stderr" >&2
  cat "$tmp/err1" >&2
  exit 1
fi
cp "$tmp/out1" expected.txt
cp "$tmp/rc1" expected-exit
echo "golden blkcheck: exit $(cat expected-exit), $(wc -c <expected.txt) bytes"
