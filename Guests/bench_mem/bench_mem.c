/* bench_mem: memset + memcpy over 32 MiB buffers (64 MiB of traffic per
 * round), repeated. */
#include "runtime.h"

#define BUF_SIZE (32u << 20)
#define ROUNDS 16

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t rounds = bench_work(cmdline_uint("rounds", ROUNDS));
    uint8_t *a = (uint8_t *)HEAP_BASE;
    uint8_t *b = (uint8_t *)(HEAP_BASE + BUF_SIZE);
    uint64_t h = 0xcbf29ce484222325ull;

    for (uint64_t r = 0; r < rounds; r++) {
        memset(a, (int)(r * 37 + 1), BUF_SIZE);
        a[r % BUF_SIZE] = (uint8_t)r;                   /* make rounds differ */
        memcpy(b, a, BUF_SIZE);
        for (uint32_t i = 0; i < BUF_SIZE; i += 4096 + 8)
            h = (h ^ b[i]) * 0x100000001b3ull;
        h = (h ^ b[r % BUF_SIZE]) * 0x100000001b3ull;
    }
    printf("bench mem: result=%016lx\n", h);
    return 0;
}
