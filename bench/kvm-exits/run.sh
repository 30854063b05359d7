#!/usr/bin/env bash
# Per-exit cost of the KVM engine: a minimal C VMM (exits-c.c) against
# `swiftvmm run --engine kvm`, both running Guests/build/exits64.elf (its
# default 100000 port-I/O and 100000 MMIO round trips: ~400k exits).
#
# Each figure is run time / KVM_RUN returns: from the first KVM_RUN to the
# guest's exit at port 0xf4, clock_gettime in C, the VMM's wallSeconds and
# kvm.runs counter (--stats) in Swift. The figures and their ratio are printed;
# nothing here fails for being slow.
#
# On KVM-PVM the kernel side dominates both figures, so the VMMs' own cost is
# also shown: user CPU time per exit of the whole process (bash `time`, the
# Swift binary run directly so SwiftPM's own startup is not counted).
#
# Usage: bench/kvm-exits/run.sh [RUNS]      (default 3; the median is reported)
# Env:   SCRATCH=path  SwiftPM scratch path (default .build)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${1:-3}
SCRATCH=${SCRATCH:-$ROOT/.build}
GUEST=$ROOT/Guests/build/exits64.elf
WORK=$SCRATCH/kvm-exits-bench
mkdir -p "$WORK"

if ! command -v swift >/dev/null 2>&1; then
    echo "kvm-exits: 'swift' not in PATH (its toolchain's clang builds the C VMM)" >&2
    exit 1
fi
TC=$(dirname "$(readlink -f "$(command -v swift)")")

if [[ ! -e /dev/kvm ]]; then
    echo "kvm-exits: skipped: /dev/kvm does not exist on this host"
    exit 0
fi
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "kvm-exits: skipped: /dev/kvm is not readable and writable by $(id -un)"
    exit 0
fi

if [[ ! -f $GUEST ]]; then
    echo "kvm-exits: building the guests (Guests/build.sh)"
    "$ROOT/Guests/build.sh" >/dev/null
fi

"$TC/clang" -O2 -Wall -Wextra -o "$WORK/exits-c" "$HERE/exits-c.c"

# The Swift side needs the CLI; build it once (release) and say so if it cannot.
SWIFT_OK=1
echo "kvm-exits: building swiftvmm (release)"
if ! (cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product swiftvmm \
        >"$WORK/swift-build.log" 2>&1); then
    SWIFT_OK=0
    echo "kvm-exits: swiftvmm does not build; C figure only (see $WORK/swift-build.log)"
else
    BIN=$(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
fi

# user CPU seconds of a command (its output discarded)
user_seconds() {
    local TIMEFORMAT=%U t
    t=$( { time "$@" >/dev/null 2>&1; } 2>&1 ) || true
    echo "$t"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

c_runs=()
s_runs=()
c_user=()
s_user=()
exits_c=0
exits_s=0
for ((i = 1; i <= RUNS; i++)); do
    out=$("$WORK/exits-c" "$GUEST") || { echo "kvm-exits: exits-c failed:"; echo "$out"; exit 1; }
    line=$(grep '^RESULT exits-c' <<<"$out")
    exits_c=$(sed -E 's/.* exits=([0-9]+).*/\1/' <<<"$line")
    c_runs+=("$(sed -E 's/.* ns_per_exit=([0-9.]+).*/\1/' <<<"$line")")
    echo "run $i: C     $(sed -E 's/^RESULT exits-c //' <<<"$line")"
    u=$(user_seconds "$WORK/exits-c" "$GUEST")
    c_user+=("$(awk -v u="$u" -v e="$exits_c" 'BEGIN { printf "%.1f", u * 1e9 / e }')")

    if [[ $SWIFT_OK == 1 ]]; then
        rm -f "$WORK/stats.json"
        set +e
        (cd "$ROOT" && swift run -c release --scratch-path "$SCRATCH" --skip-build swiftvmm run \
            --engine kvm --kernel "$GUEST" --stats "$WORK/stats.json") >"$WORK/swift-run.log" 2>&1
        status=$?
        set -e
        if [[ ! -f $WORK/stats.json ]]; then
            echo "kvm-exits: swiftvmm run wrote no stats (status $status):"
            tail -5 "$WORK/swift-run.log"
            SWIFT_OK=0
            continue
        fi
        wall=$(sed -nE 's/.*"wallSeconds" *: *([0-9.eE+-]+).*/\1/p' "$WORK/stats.json")
        exits_s=$(sed -nE 's/.*"kvm.runs" *: *([0-9]+).*/\1/p' "$WORK/stats.json")
        if [[ -z $wall || -z $exits_s || $exits_s == 0 ]]; then
            echo "kvm-exits: stats lack wallSeconds or kvm.runs"
            SWIFT_OK=0
            continue
        fi
        ns=$(awk -v w="$wall" -v e="$exits_s" 'BEGIN { printf "%.1f", w * 1e9 / e }')
        s_runs+=("$ns")
        echo "run $i: Swift exits=$exits_s ns=$(awk -v w="$wall" 'BEGIN { printf "%.0f", w * 1e9 }') ns_per_exit=$ns status=$status"
        u=$(user_seconds "$BIN/swiftvmm" run --engine kvm --kernel "$GUEST")
        s_user+=("$(awk -v u="$u" -v e="$exits_s" 'BEGIN { printf "%.1f", u * 1e9 / e }')")
    fi
done

c_med=$(printf '%s\n' "${c_runs[@]}" | median)
echo
echo "guest: ${GUEST#$ROOT/}, $RUNS run(s), median"
cu_med=$(printf '%s\n' "${c_user[@]}" | median)
printf '%-24s %10s %14s\n' "" "ns/exit" "user ns/exit"
printf '%-24s %10.1f %14.1f  (%s exits)\n' "C VMM (exits-c)" "$c_med" "$cu_med" "$exits_c"
if [[ ${#s_runs[@]} -gt 0 ]]; then
    s_med=$(printf '%s\n' "${s_runs[@]}" | median)
    su_med=$(printf '%s\n' "${s_user[@]}" | median)
    printf '%-24s %10.1f %14.1f  (%s exits)\n' "swiftvmm --engine kvm" "$s_med" "$su_med" "$exits_s"
    awk -v s="$s_med" -v c="$c_med" -v su="$su_med" -v cu="$cu_med" \
        'BEGIN { printf "%-24s %10.3f %14.3f\n", "ratio Swift / C", s / c, su / cu }'
else
    echo "swiftvmm --engine kvm   unavailable"
fi
if [[ -d /sys/module/kvm_pvm ]]; then
    echo "note: /dev/kvm is KVM-PVM here; both figures are dominated by PVM's emulation"
fi
