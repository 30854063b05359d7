/* pt_selfwrite: the guest writes its own page tables through second
 * mappings of the page-table pages (the classic shadow-paging trap) and
 * checks the effect through the normal path:
 *   1. a "window" PT maps the PML4, PDPT, PD and PT pages at VA_WIN;
 *      not-present -> present PTE/PDE/PML4E writes (no INVLPG needed),
 *      present PTE changes (checked only after the required INVLPG),
 *      8/4/1-byte stores, XCHG, LOCK CMPXCHG, LOCK OR, LOCK BTR, REP MOVSQ
 *      on page-table entries, A/D bits read back through the window;
 *   2. a PT that maps itself as a data page;
 *   3. a recursive PML4 slot (PML4[510] -> PML4): PTEs, PDEs and PML4Es
 *      edited through it, and the A/D bits the walk sets in entries used
 *      at the "wrong" level.
 * Every check is architecturally guaranteed, so the output is identical
 * in every environment. */
#include "pt.h"

#define TBL_POOL   0x1000000ul                  /* 16 MiB */
#define TBL_END    0x1200000ul
#define FRAMES     0x1400000ul                  /* 20 MiB: data frames */
#define FRAME(n)   (FRAMES + (uint64_t)(n) * 4096)
#define RAM_NEEDED 0x1800000ul

#define SLOT(n)    ((uint64_t)(n) << 39)
#define VA_T       SLOT(1)                      /* test pages: PT_T under PD_T */
#define VA_WIN     SLOT(2)                      /* window onto the page tables */
#define VA_NEW     SLOT(3)                      /* PML4E created through the window */
#define RSLOT      510ul                        /* recursive slot */
#define CANON(v)   ((v) & (1ul << 47) ? (v) | 0xFFFF000000000000ul : (v))
#define TF         (PTE_P | PTE_W | PTE_U)
#define RWU        (PTE_P | PTE_W | PTE_U)

/* window slots */
enum { W_PML4, W_PDPT, W_PD, W_PT, W_PT2, W_PTC, W_COUNT };

static vpte_t *pml4, *pdpt_t, *pd_t, *pt_t, *pt_2, *pt_c, *pt_win;

static inline uint64_t pat(uint64_t pa, unsigned i) { return 0x5E00000000000000ul | ((pa >> 12) << 16) | i; }
static inline uint64_t rd(uint64_t va) { return *(volatile uint64_t *)(uintptr_t)va; }
static inline void wr(uint64_t va, uint64_t v) { *(volatile uint64_t *)(uintptr_t)va = v; }
static inline void inv(uint64_t va) { invlpg((const volatile void *)(uintptr_t)va); }
static inline uint64_t tpg(unsigned i) { return VA_T + (uint64_t)i * 4096; }

/* entry e of the table in window slot w, seen through the window */
static inline vpte_t *win(int w, unsigned e) { return (vpte_t *)(uintptr_t)(VA_WIN + (uint64_t)w * 4096 + e * 8ul); }

static void fill_frame(uint64_t pa)
{
    for (unsigned i = 0; i < 512; i++)
        ((volatile uint64_t *)(uintptr_t)pa)[i] = pat(pa, i);
}

static void setup(void)
{
    pt_pool_init(TBL_POOL, TBL_END);
    pml4 = pt_new();
    vpte_t *pdpt_id = pt_new(), *pd_id = pt_new();
    pml4[0] = pt_pa(pdpt_id) | TF;
    pdpt_id[0] = pt_pa(pd_id) | TF;
    for (unsigned i = 0; i < 512; i++)
        pd_id[i] = ((uint64_t)i << 21) | RWU | PTE_PS;
    pdpt_t = pt_new();
    pd_t = pt_new();
    pt_t = pt_new();
    pt_2 = pt_new();
    pt_c = pt_new();
    pml4[1] = pt_pa(pdpt_t) | TF;
    pdpt_t[0] = pt_pa(pd_t) | TF;
    pd_t[0] = pt_pa(pt_t) | TF;
    /* the window: supervisor, writable */
    pt_win = pt_new();
    pt_entry(pml4, VA_WIN, 2, TF);
    *pt_entry(pml4, VA_WIN, 2, TF) = pt_pa(pt_win) | TF;
    const vpte_t *tabs[W_COUNT] = { pml4, pdpt_t, pd_t, pt_t, pt_2, pt_c };
    for (int w = 0; w < W_COUNT; w++)
        pt_win[w] = pt_pa(tabs[w]) | PTE_P | PTE_W;
    for (unsigned n = 0; n < 64; n++)
        fill_frame(FRAME(n));
    memcpy((void *)(uintptr_t)FRAME(60), pt_exec_stub, sizeof pt_exec_stub);
    write_cr3(pt_pa(pml4));
    write_cr0(read_cr0() | CR0_WP);
    if (cpu_has_nx())
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
}

/* ------------------------------------------------------------ 1. window */

static void test_window(void)
{
    int bad = check_failures;
    /* sanity: the window shows the same entries as the identity view */
    CHECK(*win(W_PML4, 1) == pml4[1] && *win(W_PD, 0) == pd_t[0], "window view: %lx %lx",
          *win(W_PML4, 1), *win(W_PD, 0));

    /* a) not-present -> present through the window, no INVLPG */
    uint64_t va = tpg(5);
    k_read(va);
    expect_pf("window: page not mapped yet", 0, va, false);
    *win(W_PT, 5) = FRAME(1) | RWU;
    CHECK(rd(va + 8) == pat(FRAME(1), 1), "window: new PTE without INVLPG: %lx", rd(va + 8));
    CHECK(pt_t[5] == (FRAME(1) | RWU | PTE_A), "window: identity view of the PTE %lx", pt_t[5]);
    if (check_failures == bad)
        puts("window: not-present -> present PTE, no INVLPG: ok\n");

    /* b) present -> other frame: stale reads allowed until INVLPG */
    bad = check_failures;
    *win(W_PT, 5) = FRAME(2) | RWU;
    (void)rd(va);                       /* old or new frame: not checked */
    inv(va);
    CHECK(rd(va + 16) == pat(FRAME(2), 2), "window: remap after INVLPG: %lx", rd(va + 16));
    wr(va + 24, 0x1234);
    CHECK(rd(FRAME(2) + 24) == 0x1234, "window: write through remapped page");
    CHECK((*win(W_PT, 5) & (PTE_A | PTE_D)) == (PTE_A | PTE_D), "window: A/D seen through the window: %lx",
          *win(W_PT, 5));
    if (check_failures == bad)
        puts("window: remap present PTE + INVLPG, A/D read through the window: ok\n");

    /* c) a PDE and a PML4E created through the window */
    bad = check_failures;
    pt_2[3] = FRAME(3) | RWU;
    *win(W_PD, 1) = pt_pa(pt_2) | TF;
    CHECK(rd(VA_T + 0x200000 + 3 * 4096 + 8) == pat(FRAME(3), 1), "window: new PDE");
    vpte_t *pdpt_n = pt_new(), *pd_n = pt_new();
    pd_n[0] = pt_pa(pt_2) | TF;                 /* pt_2 shared by two PDs */
    pdpt_n[0] = pt_pa(pd_n) | TF;
    *win(W_PML4, 3) = pt_pa(pdpt_n) | TF;
    CHECK(rd(VA_NEW + 3 * 4096 + 16) == pat(FRAME(3), 2), "window: new PML4E");
    /* change the shared PT through the window: both views after INVLPG */
    *win(W_PT2, 3) = FRAME(4) | RWU;
    inv(VA_T + 0x200000 + 3 * 4096);
    inv(VA_NEW + 3 * 4096);
    CHECK(rd(VA_T + 0x200000 + 3 * 4096) == pat(FRAME(4), 0) && rd(VA_NEW + 3 * 4096) == pat(FRAME(4), 0),
          "window: shared PT changed");
    if (check_failures == bad)
        puts("window: new PDE and PML4E without INVLPG, shared PT update: ok\n");

    /* d) partial and atomic stores on PTEs */
    bad = check_failures;
    va = tpg(6);
    vpte_t *e = win(W_PT, 6);
    *e = (FRAME(5) | RWU) & ~PTE_P;
    __asm__ volatile("lock orq $1, (%0)" :: "r"(e) : "memory");          /* P: 0 -> 1 */
    CHECK(rd(va) == pat(FRAME(5), 0), "lock or: set P");
    uint64_t old = FRAME(5) | RWU | PTE_A, nw = FRAME(6) | RWU;
    uint64_t rax = old;
    __asm__ volatile("lock cmpxchgq %2, (%1)" : "+a"(rax) : "r"(e), "r"(nw) : "memory", "cc");
    CHECK(rax == old, "lock cmpxchg: old value %lx", rax);
    inv(va);
    CHECK(rd(va + 8) == pat(FRAME(6), 1), "lock cmpxchg: remap");
    uint8_t cf;
    __asm__ volatile("lock btrq $5, (%1)\n\t setc %0" : "=r"(cf) : "r"(e) : "memory", "cc");  /* clear A */
    CHECK(cf == 1, "lock btr: A was set");
    inv(va);
    CHECK(!(*e & PTE_A), "lock btr: A clear");
    (void)rd(va);
    CHECK(*e & PTE_A, "lock btr: A set again by a read");
    *(volatile uint8_t *)e = (uint8_t)(*e & ~PTE_W);                    /* 1-byte store: W=0 */
    inv(va);
    if (check_failures == bad)
        puts("window: LOCK OR, LOCK CMPXCHG, LOCK BTR on a PTE: ok\n");
    k_write(va, 1);
    expect_pf("window: 1-byte store cleared W", PF_P | PF_W, va, false);
    bad = check_failures;
    ((volatile uint32_t *)e)[0] = (uint32_t)(FRAME(7) | RWU);           /* 4-byte store: low half */
    inv(va);
    CHECK(rd(va + 8) == pat(FRAME(7), 1), "4-byte store: low half");
    wr(va + 16, 0x77);
    CHECK(rd(FRAME(7) + 16) == 0x77, "4-byte store: writable again");
    if (check_failures == bad)
        puts("window: 1-byte and 4-byte PTE stores: ok\n");
    if (cpu_has_nx()) {
        uint64_t x = tpg(8);
        *win(W_PT, 8) = FRAME(60) | RWU;
        CHECK(k_exec(x) == PT_EXEC_OK, "exec before NX");
        expect_no_trap("exec before NX");
        ((volatile uint32_t *)win(W_PT, 8))[1] = (uint32_t)(PTE_NX >> 32);   /* high half: NX */
        inv(x);
        k_exec(x);
        expect_pf("window: 4-byte store set NX", PF_P | PF_I, x, false);
    }
    uint64_t prev;
    __asm__ volatile("xchgq %0, (%1)" : "=r"(prev) : "r"(e), "0"(0ul) : "memory");   /* get-and-clear */
    CHECK((prev & PTE_ADDR) == FRAME(7), "xchg: old PTE %lx", prev);
    inv(va);
    k_read(va + 0x40);
    expect_pf("window: XCHG cleared the PTE", 0, va + 0x40, false);

    /* e) REP MOVSQ: copy a whole PT through the window, then switch to it */
    bad = check_failures;
    for (unsigned i = 10; i < 20; i++)
        pt_t[i] = FRAME(10 + i) | RWU;
    for (unsigned i = 10; i < 20; i++)
        (void)rd(tpg(i));
    void *dst = (void *)win(W_PTC, 0), *src = (void *)win(W_PT, 0);
    uint64_t n = 512;
    __asm__ volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(n) :: "memory");
    *win(W_PTC, 15) = FRAME(40) | RWU;
    *win(W_PD, 0) = pt_pa(pt_c) | TF;
    for (unsigned i = 10; i < 20; i++)
        inv(tpg(i));
    for (unsigned i = 10; i < 20; i++) {
        uint64_t f = i == 15 ? FRAME(40) : FRAME(10 + i);
        CHECK(rd(tpg(i) + 8 * i) == pat(f, i), "rep movsq copy: page %u reads %lx", i, rd(tpg(i) + 8 * i));
    }
    CHECK(*win(W_PTC, 12) & PTE_A, "copied PT: A set in the copy after a read");
    if (check_failures == bad)
        puts("window: PT copied with REP MOVSQ and installed: ok\n");
    /* back to the original PT (a PDE change: INVLPG each page used) */
    *win(W_PD, 0) = pt_pa(pt_t) | TF;
    for (unsigned i = 0; i < 20; i++)
        inv(tpg(i));
}

/* ----------------------------------------------- 2. a PT that maps itself */

static void test_self_map(void)
{
    int bad = check_failures;
    const unsigned S = 30;
    pt_t[S] = pt_pa(pt_t) | RWU;            /* tpg(30) is pt_t itself */
    volatile uint64_t *self = (volatile uint64_t *)(uintptr_t)tpg(S);
    CHECK(self[S] == (pt_pa(pt_t) | RWU | PTE_A), "self map: entry %u reads %lx", S, self[S]);
    self[31] = FRAME(41) | RWU;             /* not present -> present */
    CHECK(rd(tpg(31) + 8) == pat(FRAME(41), 1), "self map: new PTE");
    self[31] = FRAME(42) | RWU;
    inv(tpg(31));
    CHECK(rd(tpg(31) + 16) == pat(FRAME(42), 2), "self map: remapped PTE");
    CHECK((self[S] & PTE_D) && (self[31] & PTE_A), "self map: A/D in the self entry %lx / %lx", self[S], self[31]);
    /* make the self mapping read-only through itself */
    self[S] = pt_pa(pt_t) | PTE_P | PTE_U;
    inv(tpg(S));
    if (check_failures == bad)
        puts("self map: PT mapped by its own entry, edited through itself: ok\n");
    k_write(tpg(S) + 8 * 32, FRAME(43) | RWU);
    expect_pf("self map: read-only self entry, write", PF_P | PF_W, tpg(S) + 8 * 32, false);
    CHECK(pt_t[32] == 0, "self map: write landed despite #PF");
    pt_t[S] = 0;
    inv(tpg(S));
}

/* -------------------------------------------- 3. recursive PML4 slot */

static inline uint64_t rva(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t off)
{
    return CANON((a << 39) | (b << 30) | (c << 21) | (d << 12) | off);
}
/* addresses of the entries mapping va, through the recursive slot */
static inline vpte_t *r_pte(uint64_t va)
{
    return (vpte_t *)(uintptr_t)rva(RSLOT, pt_index(va, 4), pt_index(va, 3), pt_index(va, 2), pt_index(va, 1) * 8ul);
}
static inline vpte_t *r_pde(uint64_t va)
{
    return (vpte_t *)(uintptr_t)rva(RSLOT, RSLOT, pt_index(va, 4), pt_index(va, 3), pt_index(va, 2) * 8ul);
}
static inline vpte_t *r_pdpte(uint64_t va)
{
    return (vpte_t *)(uintptr_t)rva(RSLOT, RSLOT, RSLOT, pt_index(va, 4), pt_index(va, 3) * 8ul);
}
static inline vpte_t *r_pml4e(unsigned i)
{
    return (vpte_t *)(uintptr_t)rva(RSLOT, RSLOT, RSLOT, RSLOT, i * 8ul);
}

static void test_recursive(void)
{
    int bad = check_failures;
    pml4[RSLOT] = pt_pa(pml4) | PTE_P | PTE_W;
    write_cr3(read_cr3());
    CHECK(*r_pml4e(1) == pml4[1], "recursive: PML4E[1] %lx vs %lx", *r_pml4e(1), pml4[1]);
    CHECK((*r_pml4e(RSLOT) & PTE_ADDR) == pt_pa(pml4), "recursive: self entry %lx", *r_pml4e(RSLOT));
    CHECK(*r_pdpte(VA_T) == pdpt_t[0] && *r_pde(VA_T) == pd_t[0], "recursive: PDPTE/PDE views");

    /* PTE: not present -> present, then remap with INVLPG */
    uint64_t va = tpg(40);
    *r_pte(va) = FRAME(44) | RWU;
    CHECK(rd(va + 8) == pat(FRAME(44), 1), "recursive: new PTE");
    *r_pte(va) = FRAME(45) | RWU;
    inv(va);
    CHECK(rd(va + 8) == pat(FRAME(45), 1), "recursive: remapped PTE");
    CHECK(pt_t[40] == (FRAME(45) | RWU | PTE_A), "recursive: identity view %lx", pt_t[40]);
    /* the walk through the recursive slot used pd_t[0] as a leaf: the
     * write above set its D bit (bit 6, ignored when it acts as a PDE) */
    CHECK(pd_t[0] & PTE_D, "recursive: D in the PDE used as a leaf: %lx", pd_t[0]);
    if (check_failures == bad)
        puts("recursive: PTE created and remapped, D set in the PDE used as a leaf: ok\n");

    /* PDE: a new PT installed through the recursive slot */
    bad = check_failures;
    vpte_t *pt_r = pt_new();
    pt_r[7] = FRAME(46) | RWU;
    uint64_t vb = VA_T + 2 * 0x200000ul;
    *r_pde(vb) = pt_pa(pt_r) | TF;
    CHECK(rd(vb + 7 * 4096 + 24) == pat(FRAME(46), 3), "recursive: new PDE");
    /* and its PTE edited through the recursive slot too */
    *r_pte(vb + 8 * 4096) = FRAME(47) | RWU;
    CHECK(rd(vb + 8 * 4096 + 24) == pat(FRAME(47), 3), "recursive: PTE of the new PT");
    CHECK(pt_r[8] == (FRAME(47) | RWU | PTE_A), "recursive: identity view of the new PT %lx", pt_r[8]);
    if (check_failures == bad)
        puts("recursive: PDE created, its PTEs edited through the recursive slot: ok\n");

    /* PML4E: a new slot through the 4-fold recursion */
    bad = check_failures;
    vpte_t *pdpt_r = pt_new(), *pd_r = pt_new(), *pt_rr = pt_new();
    pdpt_r[0] = pt_pa(pd_r) | TF;
    pd_r[0] = pt_pa(pt_rr) | TF;
    pt_rr[0] = FRAME(48) | RWU;
    *r_pml4e(4) = pt_pa(pdpt_r) | TF;
    CHECK(rd(SLOT(4) + 32) == pat(FRAME(48), 4), "recursive: new PML4E");
    CHECK(pml4[RSLOT] & PTE_D, "recursive: D in the self entry after writing through R,R,R,R: %lx", pml4[RSLOT]);
    /* unmap through the recursive slot */
    *r_pte(SLOT(4)) = 0;
    inv(SLOT(4));
    if (check_failures == bad)
        puts("recursive: PML4E created through R,R,R,R; D set in the self entry: ok\n");
    k_read(SLOT(4) + 8);
    expect_pf("recursive: PTE cleared", 0, SLOT(4) + 8, false);

    /* remove the recursive slot: its addresses fault afterwards */
    pml4[RSLOT] = 0;
    inv((uint64_t)(uintptr_t)r_pte(va));
    inv((uint64_t)(uintptr_t)r_pml4e(4));
    write_cr3(read_cr3());
    k_read((uint64_t)(uintptr_t)r_pte(va));
    expect_pf("recursive: slot removed", 0, (uint64_t)(uintptr_t)r_pte(va), false);
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("pt_selfwrite: start\n");
    if (is_multiboot() && boot_info.have_mem &&
        (uint64_t)boot_info.mem_upper * 1024 + 0x100000 < RAM_NEEDED) {
        printf("FAIL pt_selfwrite: needs %lu MiB of RAM\n", RAM_NEEDED >> 20);
        return 1;
    }
    sys_init();
    trap_reset();
    setup();
    puts("pt_selfwrite: own tables loaded\n");
    test_window();
    test_self_map();
    test_recursive();
    return finish("pt_selfwrite");
}
