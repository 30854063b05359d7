/* bench_chase: pointer chasing along one random cycle through a 64 MiB
 * region (one node per 64-byte line). With pages=4k the region is remapped
 * with 4 KiB pages (identity) before chasing; the result does not change. */
#include "sys.h"

#define REGION      HEAP_BASE                   /* 16 MiB, 2 MiB aligned */
#define REGION_SIZE (64ull << 20)
#define NODE        64ull
#define NNODES      (REGION_SIZE / NODE)
#define IDX         (REGION + REGION_SIZE)      /* permutation scratch (4 MiB) */
#define TABLES      (IDX + NNODES * 4)          /* page tables for pages=4k */
#define STEPS       6000000ull

static uint64_t alloc_next = TABLES;

static uint64_t *alloc_table(void)
{
    uint64_t *t = (uint64_t *)alloc_next;
    alloc_next += 4096;
    memset(t, 0, 4096);
    return t;
}

static bool map_4k(void)
{
    for (uint64_t va = REGION; va < REGION + REGION_SIZE; va += 0x200000) {
        int level = 0;
        uint64_t *e = paging_leaf(va, &level);
        if (!e)
            return false;
        if (level == 3) {               /* 1 GiB page: split into 2 MiB pages */
            uint64_t *pd = alloc_table();
            uint64_t base = *e & 0x000FFFFFC0000000ull, flags = *e & 0x8000000000000FFFull;
            for (int i = 0; i < 512; i++)
                pd[i] = (base + ((uint64_t)i << 21)) | flags;
            *e = (uint64_t)(uintptr_t)pd | (flags & ~0x80ull & 0xFFF);
            write_cr3(read_cr3());
            e = paging_leaf(va, &level);
        }
        if (level == 2) {
            uint64_t *pt = alloc_table();
            uint64_t base = *e & 0x000FFFFFFFE00000ull;
            uint64_t flags = (*e & 0x8000000000000FFFull) & ~0x80ull;  /* drop PS */
            for (int i = 0; i < 512; i++)
                pt[i] = (base + ((uint64_t)i << 12)) | flags;
            *e = (uint64_t)(uintptr_t)pt | (flags & 0xFFF & ~0x1000ull);
        }
    }
    write_cr3(read_cr3());
    return true;
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t steps = bench_work(cmdline_uint("steps", STEPS));
    char pages[8] = "2m";
    cmdline_get("pages", pages, sizeof pages);
    bool small = strcmp(pages, "4k") == 0;

    if (is_multiboot() && boot_info.have_mem &&
        (uint64_t)boot_info.mem_upper * 1024 + 0x100000 < alloc_next + 0x100000) {
        printf("FAIL bench chase: needs %lu MiB of RAM (use -m 256)\n", (alloc_next >> 20) + 2);
        return 1;
    }
    if (small && !map_4k()) {
        puts("FAIL bench chase: could not remap the region with 4 KiB pages\n");
        return 1;
    }
    int level = 0;
    paging_leaf(REGION + 0x12345, &level);
    printf("bench chase: %s pages (leaf level %d)\n", small ? "4k" : "2m", level);

    /* Sattolo's algorithm: a single cycle through all nodes */
    uint32_t *idx = (uint32_t *)IDX;
    for (uint32_t i = 0; i < NNODES; i++)
        idx[i] = i;
    uint64_t x = 88172645463325252ull;
    for (uint32_t i = NNODES - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t j = (uint32_t)(x % i);
        uint32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    for (uint32_t i = 0; i < NNODES; i++) {
        uint64_t *node = (uint64_t *)(REGION + (uint64_t)i * NODE);
        node[0] = REGION + (uint64_t)idx[i] * NODE;
        node[1] = i;
    }

    uint64_t *p = (uint64_t *)REGION;
    uint64_t acc = 0;
    for (uint64_t s = 0; s < steps; s++) {
        acc += p[1];
        p = (uint64_t *)p[0];
    }
    printf("bench chase: result=%016lx\n", acc ^ (uint64_t)(uintptr_t)p);
    return 0;
}
