#!/bin/sh
# Runs each deterministic guest on QEMU (guests/qemu.sh) and records its
# exact console bytes in guests/<name>/expected.txt and its exit code in
# guests/<name>/expected-exit. Each guest is run twice and must produce the
# same bytes both times, or no golden is written.
#
# Usage: guests/golden.sh [name...]   (default: every golden guest)
set -eu
cd "$(dirname "$0")"

GOLDEN="hello bench-small timer traps csr seq-short irqstress"
TIMEOUT=${TIMEOUT:-60}

for name in ${*:-$GOLDEN}; do
  elf="$name/$name.elf"
  tmp=$(mktemp -d)
  for run in 1 2; do
    set +e
    timeout "$TIMEOUT" ./qemu.sh "$elf" </dev/null >"$tmp/out$run" 2>"$tmp/err$run"
    echo $? >"$tmp/rc$run"
    set -e
  done
  if [ "$(cat "$tmp/rc1")" = 124 ]; then
    echo "golden.sh: $name timed out after ${TIMEOUT}s" >&2
    exit 1
  fi
  if ! cmp -s "$tmp/out1" "$tmp/out2" || ! cmp -s "$tmp/rc1" "$tmp/rc2"; then
    echo "golden.sh: $name is not deterministic on QEMU" >&2
    diff "$tmp/out1" "$tmp/out2" >&2 || true
    exit 1
  fi
  if [ -s "$tmp/err1" ]; then
    echo "golden.sh: $name wrote to stderr:" >&2
    cat "$tmp/err1" >&2
    exit 1
  fi
  cp "$tmp/out1" "$name/expected.txt"
  cp "$tmp/rc1" "$name/expected-exit"
  echo "golden $name: exit $(cat "$name/expected-exit"), $(wc -c <"$name/expected.txt") bytes"
  rm -rf "$tmp"
done
