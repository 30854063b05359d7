#!/usr/bin/env bash
# Builds the CPU benchmark kernels (Guests/bench_*) as host user-space programs:
# the same C, compiled with the guests' code-generation flags, linked with the
# guests' own printf/string/cmdline code and a syscall stand-in (host_rt.c) for
# the rest of the runtime. No libc. `swiftvmm bench cpu` runs them as "native".
# Usage: bench/native/build.sh [OUTDIR]     (default OUTDIR: bench/native/build)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
G="$ROOT/Guests"
OUT=${1:-$HERE/build}
mkdir -p "$OUT"
if [[ -z "${TC:-}" ]]; then
    command -v swift >/dev/null 2>&1 || { echo "build.sh: error: 'swift' not found; set TC" >&2; exit 1; }
    TC=$(dirname "$(readlink -f "$(command -v swift)")")
fi
CC="$TC/clang"
LD="$TC/ld.lld"
# The guests' flags (Guests/build.sh) except the target: same instructions, host ABI.
CFLAGS=(--target=x86_64-unknown-linux-gnu -ffreestanding -fno-pic -fno-pie -mno-red-zone
        -nostdlib -fno-stack-protector -mno-sse -mno-mmx -mno-avx -O2 -std=gnu11 -Wall
        -Wextra -Werror -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-ident
        -ffunction-sections -fdata-sections -fno-common -I"$G/runtime")
OBJ="$OUT/obj"
mkdir -p "$OBJ"
common=()
for src in "$HERE/host_rt.c" "$G/runtime/cmdline.c" "$G/runtime/printf.c" "$G/runtime/string.c"; do
    o="$OBJ/$(basename "$src").o"
    "$CC" "${CFLAGS[@]}" -c "$src" -o "$o"
    common+=("$o")
done
built=()
for d in "$G"/bench_*/; do
    name=$(basename "$d")
    objs=()
    for src in "$d"/*.c; do
        o="$OBJ/$name-$(basename "$src").o"
        "$CC" "${CFLAGS[@]}" -c "$src" -o "$o"
        objs+=("$o")
    done
    "$LD" -static --no-pie --build-id=none --gc-sections -z noexecstack -e _start \
        -o "$OUT/$name" "${common[@]}" "${objs[@]}"
    built+=("$name")
done
echo "build.sh: built ${built[*]} into $OUT"
