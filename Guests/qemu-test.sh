#!/usr/bin/env bash
# Runs every guest under QEMU (TCG) and checks exit status and last line.
# Usage: Guests/qemu-test.sh [BUILDDIR]   (default Guests/build; run build.sh first)
#   QUICK=1 (default) passes small work sizes to the benchmarks (div=20).
#   Also boots each NAME64.elf through the boot64 shim (-initrd).
#   Per guest: RAM (MEM, default 256 MiB) and expected host status (STATUS,
#   default 1 = guest code 0; pv_mmu exits 3 = status 7 without SwiftVMM).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
B=${1:-$HERE/build}
QEMU=${QEMU:-qemu-system-x86_64}
QUICK=${QUICK:-1}
command -v "$QEMU" >/dev/null || { echo "qemu-test.sh: $QEMU not found" >&2; exit 1; }

# guest -> expected last line (regex)
declare -A EXPECT=(
    [hello]='^(multiboot: magic=0x2badb002 mem_upper=[0-9]+K cmdline=".*"|entry: long mode \(elf64\))$'
    [cpuid]='^cpuid: done$'
    [exits]='^exits: done$'
    [gdbtarget]='^gdbtarget: total=35 counter=15$'
    [exceptions]='^PASS exceptions$'
    [idt_ist]='^PASS idt_ist$'
    [paging]='^PASS paging$'
    [syscall]='^PASS syscall$'
    [softint]='^PASS softint$'
    [modes]='^PASS modes$'
    # sdm=0: skips the cases QEMU TCG does not check (see Guests/README.md)
    [segments]='^segments: done$'
    [bench_loop]='^bench loop: result=[0-9a-f]+$'
    [bench_sort]='^bench sort: result=[0-9a-f]+$'
    [bench_crc32]='^bench crc32: result=[0-9a-f]+$'
    [bench_mem]='^bench mem: result=[0-9a-f]+$'
    [bench_chase]='^bench chase: result=[0-9a-f]+$'
    [pt_torture]='^PASS pt_torture$'
    [pt_selfwrite]='^PASS pt_selfwrite$'
    # default work (mb=256 steps=3000000): the checksum is the same for 4k and 2m pages
    [tlb_thrash]='^tlb_thrash: pages=(4k|2m) mb=256 steps=3000000 result=02a46e15d6e7684b$'
    # QEMU has no SwiftVMM PV MMU: the guest says so and exits with code 3 (status 7)
    [pv_mmu]='^pv_mmu: no SwiftVMM PV MMU \(hypervisor signature ".*"\)$'
    [virtio]='^PASS virtio$'
    [smp]='^PASS smp$'
)
# guest -> RAM in MiB (default 256) and expected host exit status (default 1 = guest code 0)
declare -A MEM=([tlb_thrash]=512)
declare -A STATUS=([pv_mmu]=7)

# virtio: a scratch disk and QEMU's modern-only virtio-blk and virtio-rng
DISK=$(mktemp /tmp/qemu-test-disk.XXXXXX)
trap 'rm -f "$DISK"' EXIT
truncate -s 1M "$DISK"
VIRTIO_ARGS=(-drive "file=$DISK,if=none,id=d0,format=raw"
             -device virtio-blk-pci,drive=d0,disable-legacy=on -device virtio-rng-pci,disable-legacy=on)

fail=0
run() {   # run LABEL EXPECT-REGEX qemu-args...
    local label=$1 re=$2; shift 2
    local out t0 t1 rc
    local mem=${RUN_MEM:-256} want=${RUN_STATUS:-1}
    t0=$(date +%s%N)
    set +e
    out=$(timeout 60 "$QEMU" -accel tcg -display none -serial stdio -no-reboot -m "$mem" \
          -device isa-debug-exit,iobase=0xf4,iosize=4 "$@" </dev/null 2>&1)
    rc=$?
    set -e
    t1=$(date +%s%N)
    local last
    last=$(printf '%s\n' "$out" | tail -n 1)
    if [[ $rc == "$want" && $last =~ $re ]]; then
        printf 'ok   %-26s %6d ms  %s\n' "$label" $(( (t1 - t0) / 1000000 )) "$last"
    else
        printf 'FAIL %-26s status=%d\n%s\n' "$label" "$rc" "$out"
        fail=1
    fi
}

for g in $(printf '%s\n' "${!EXPECT[@]}" | sort); do
    RUN_MEM=${MEM[$g]:-256}
    RUN_STATUS=${STATUS[$g]:-1}
    args="count=1000"
    [[ $g == bench_* && $QUICK == 1 ]] && args="div=20"
    [[ $g == segments ]] && args="sdm=0"
    extra=()
    [[ $g == virtio ]] && extra=("${VIRTIO_ARGS[@]}")
    [[ -f "$B/$g.elf" ]] && run "$g.elf" "${EXPECT[$g]}" -kernel "$B/$g.elf" -append "$args" "${extra[@]}"
    [[ $g == bench_chase && -f "$B/$g.elf" ]] && run "$g.elf pages=4k" "${EXPECT[$g]}" -kernel "$B/$g.elf" -append "$args pages=4k"
    [[ $g == smp && -f "$B/$g.elf" ]] && run "$g.elf -smp 4" "${EXPECT[$g]}" -kernel "$B/$g.elf" -smp 4
    [[ $g == tlb_thrash && -f "$B/$g.elf" ]] && run "$g.elf pages=2m" "${EXPECT[$g]}" -kernel "$B/$g.elf" -append "$args pages=2m"
    # pvmock=1: the same test kernel against its in-guest model of the hypercalls
    [[ $g == pv_mmu && -f "$B/$g.elf" ]] && RUN_STATUS=1 run "$g.elf pvmock=1" '^PASS pv_mmu$' -kernel "$B/$g.elf" -append "pvmock=1"
    [[ -f "$B/${g}64.elf" && -f "$B/boot64.elf" ]] && run "${g}64.elf (boot64)" "${EXPECT[$g]}" -kernel "$B/boot64.elf" -initrd "$B/${g}64.elf" "${extra[@]}"
done
exit $fail
