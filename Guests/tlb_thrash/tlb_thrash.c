/* tlb_thrash: TLB-thrashing random walk. Maps mb=N MiB (default 256) of
 * physical memory from 16 MiB up at virtual VA_BASE with its own page
 * tables, pages=4k (default) or pages=2m, writes one tag per 64-byte line,
 * then reads steps=N pseudo-random lines (64-bit LCG; one step in 16 also
 * writes the line back). The footprint is far beyond any TLB's reach, so
 * nearly every step misses: a nested (2D) walk pays up to 24 references per
 * miss, a native or shadow walk 4 (3 with 2 MiB pages).
 * The result depends only on mb and steps, not on the page size.
 *   tlb_thrash: pages=4k mb=256 steps=N result=<checksum> */
#include "pt.h"

#define DATA_PA   HEAP_BASE                     /* 16 MiB, 2 MiB aligned */
#define VA_BASE   0x0000100000000000ul          /* PML4 slot 32 */
#define LINE      64ul
#define STEPS     3000000ul
#define TF        (PTE_P | PTE_W)

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t mb = cmdline_uint("mb", 256);
    mb = (mb + 1) & ~1ul;                       /* whole 2 MiB pages */
    if (mb < 2)
        mb = 2;
    uint64_t steps = bench_work(cmdline_uint("steps", STEPS));
    char pages[8] = "4k";
    cmdline_get("pages", pages, sizeof pages);
    bool small = strcmp(pages, "2m") != 0;
    uint64_t bytes = mb << 20, lines = bytes / LINE;

    /* page tables right after the data; 1 PT per 2 MiB with 4 KiB pages */
    uint64_t tables = DATA_PA + bytes;
    uint64_t ntables = 2 + 4 + 1 + (mb / 1024 + 1) + (small ? mb / 2 : 0);
    uint64_t need = tables + ntables * 4096;
    if (is_multiboot() && boot_info.have_mem && (uint64_t)boot_info.mem_upper * 1024 + 0x100000 < need) {
        printf("FAIL tlb_thrash: mb=%lu needs %lu MiB of RAM (qemu -m %lu)\n", mb, (need >> 20) + 1,
               ((need >> 20) + 64) & ~63ul);
        return 1;
    }
    if (need > 0xF0000000ul) {
        printf("FAIL tlb_thrash: mb=%lu too large (tables must lie below 3.75 GiB)\n", mb);
        return 1;
    }

    pt_pool_init(tables, need);
    vpte_t *pml4 = pt_new(), *pdpt_id = pt_new();
    pml4[0] = pt_pa(pdpt_id) | TF;
    for (unsigned g = 0; g < 4; g++) {          /* identity 0..4 GiB, 2 MiB pages */
        vpte_t *pd = pt_new();
        pdpt_id[g] = pt_pa(pd) | TF;
        for (unsigned i = 0; i < 512; i++)
            pd[i] = (((uint64_t)g << 30) + ((uint64_t)i << 21)) | TF | PTE_PS;
    }
    for (uint64_t off = 0; off < bytes; off += 0x200000) {
        vpte_t *pde = pt_entry(pml4, VA_BASE + off, 2, TF);
        if (small) {
            vpte_t *pt = pt_new();
            for (unsigned i = 0; i < 512; i++)
                pt[i] = (DATA_PA + off + ((uint64_t)i << 12)) | TF;
            *pde = pt_pa(pt) | TF;
        } else {
            *pde = (DATA_PA + off) | TF | PTE_PS;
        }
    }
    write_cr3(pt_pa(pml4));
    printf("tlb_thrash: pages=%s mb=%lu steps=%lu: %lu lines, %lu page-table pages\n",
           small ? "4k" : "2m", mb, steps, lines, (pt_pool_next - tables) >> 12);

    volatile uint64_t *base = (volatile uint64_t *)VA_BASE;
    for (uint64_t l = 0; l < lines; l++)
        base[l * (LINE / 8)] = l * 0x9E3779B97F4A7C15ul ^ 0xD1B54A32D192ED03ul;

    uint64_t x = 0x2545F4914F6CDD1Dul, acc = 0;
    for (uint64_t s = 0; s < steps; s++) {
        x = x * 6364136223846793005ul + 1442695040888963407ul;
        uint64_t l = (x >> 24) % lines;
        volatile uint64_t *p = base + l * (LINE / 8);
        uint64_t v = *p;
        acc = (acc ^ v) * 0x100000001B3ul + s;
        if ((x >> 60) == 0)
            *p = v + s;
    }
    printf("tlb_thrash: pages=%s mb=%lu steps=%lu result=%016lx\n", small ? "4k" : "2m", mb, steps, acc);
    return 0;
}
