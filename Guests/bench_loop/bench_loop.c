/* bench_loop: tight integer loop (LCG + xor-shift mix), ITERS * scale / div iterations. */
#include "runtime.h"

#define ITERS 1000000000ull

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t n = bench_work(cmdline_uint("iters", ITERS));
    uint64_t x = 0x243F6A8885A308D3ull, acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        acc += (x >> 29) ^ i;
        __asm__ volatile("" : "+r"(acc));   /* keep the loop as written */
    }
    printf("bench loop: result=%016lx\n", acc ^ x);
    return 0;
}
