#!/bin/sh
# Builds every guest into guests/<name>/<name>.elf with Debian's
# gcc-riscv64-unknown-elf + picolibc-riscv64-unknown-elf, then checks that no
# image holds an instruction ftvm lacks (C, A, F/D extensions).
#
# Usage: guests/build.sh [name...]   (default: all guests)
# EXTRA_CFLAGS adds flags and OUT_DIR redirects output, for measurement
# builds that must not overwrite the committed images.
set -eu
cd "$(dirname "$0")"

CC=${CC:-riscv64-unknown-elf-gcc}
OBJDUMP=${OBJDUMP:-riscv64-unknown-elf-objdump}

# Compile with zicsr spelled out (GCC 12 defaults to ISA spec 20191213, where
# CSR instructions are not part of I) but link with plain rv32im so that the
# driver selects picolibc's and libgcc's rv32im/ilp32 multilib; rv32im_zicsr
# would not match it and would silently fall back to the rv64 default.
ARCH_CC="-march=rv32im_zicsr -mabi=ilp32"
ARCH_LD="-march=rv32im -mabi=ilp32"
CFLAGS="$ARCH_CC --specs=picolibc.specs -Os -g -Wall -Wextra -Werror \
  -ffunction-sections -fdata-sections -fno-common -Icommon"
# common/guest.ld places everything in the first 4 MiB of RAM (see there).
# --crt0=hosted selects picolibc's crt0 that passes main's result to exit().
LDFLAGS="$ARCH_LD --specs=picolibc.specs --crt0=hosted -Tcommon/guest.ld \
  -Wl,--defsym=__stack_size=0x8000 -Wl,--gc-sections"
COMMON="common/rt.c common/trap.S"

# name:source-dir:extra cflags[:library dirs, compiled in and on -I]
GUESTS="
hello:hello:
bench:bench:
bench-small:bench:-DBENCH_SCALE=1
bench-timer:bench:-DBENCH_TIMER_HZ=1000
timer:timer:
csr:csr:
traps:traps:
seq:seq:
seq-short:seq:-DSEQ_LINES=50
seq-mid:seq:-DSEQ_LINES=300
seq-long:seq:-DSEQ_LINES=20000
irqstress:irqstress:
blkcheck:blkcheck::virtio
dns:dns::virtio
kv:kv::virtio
"

build_one() {
  name=$1 dir=$2 extra=$3 libs=${4:-}
  libsrc=""
  for lib in $libs; do
    extra="$extra -I$lib"
    libsrc="$libsrc $lib/*.c"
  done
  out="${OUT_DIR:-$name}/$name.elf"
  mkdir -p "$(dirname "$out")"
  obj=$(mktemp -d)
  objs=""
  # shellcheck disable=SC2086
  for src in $COMMON $libsrc "$dir"/*.c $(ls "$dir"/*.S 2>/dev/null || true); do
    o="$obj/$(echo "$src" | tr / _).o"
    # shellcheck disable=SC2086
    $CC $CFLAGS $extra ${EXTRA_CFLAGS:-} -c -o "$o" "$src"
    objs="$objs $o"
  done
  # shellcheck disable=SC2086
  $CC $LDFLAGS -o "$out" $objs
  rm -rf "$obj"
  # NOTE: objdump prints compressed encodings as 4 hex digits; any c.*, amo*,
  # lr/sc or floating-point mnemonic means the image would fault on ftvm.
  bad=$($OBJDUMP -d -M no-aliases "$out" |
    awk -F'\t' 'NF >= 3 && ($2 ~ /^[0-9a-f]{4} *$/ || $3 ~ /^(c\.|amo|lr\.|sc\.|fence\.i|f(add|sub|mul|div|sqrt|min|max|mv|cvt|eq|lt|le|class|l[wd]|s[wd]|madd|msub|nmadd|nmsub|sgnj))/) { print }' |
    head -5)
  if [ -n "$bad" ]; then
    echo "build.sh: $out contains instructions outside RV32IM+Zicsr:" >&2
    echo "$bad" >&2
    exit 1
  fi
  echo "built $out ($(wc -c <"$out") bytes)"
}

want=${*:-}
echo "$GUESTS" | while IFS=: read -r name dir extra libs; do
  [ -n "$name" ] || continue
  if [ -n "$want" ]; then
    case " $want " in *" $name "*) ;; *) continue ;; esac
  fi
  build_one "$name" "$dir" "$extra" "$libs"
done
