/* pv_mmu: paravirtual-MMU test kernel for SwiftVMM --mmu paravirt
 * (docs/HYPERCALLS.md). It never writes a live page table directly: it pins
 * its tables, fills them with batched HC_MMU_UPDATE calls, switches with
 * HC_NEW_BASEPTR and invalidates with HC_INVLPG / HC_FLUSH_TLB, then checks
 * that the VMM refuses invalid updates with the documented errors.
 *
 * Without the SwiftVMM PV MMU (QEMU, or SwiftVMM in another --mmu mode) it
 * prints "pv_mmu: no SwiftVMM PV MMU (hypervisor signature "...")" and
 * exits with code 3. With the command line token pvmock=1 it runs against
 * an in-guest model of the hypercalls (pvmock.c), for development under QEMU.
 *
 * Physical layout: image at 1 MiB, tables at 16 MiB (one 2 MiB region,
 * mapped read-only with 4 KiB pages in the new address space), data frames
 * at 20 MiB; the new address space identity-maps 1..32 MiB only. */
#include "pt.h"
#include "hypercall.h"

#define TBL        0x1000000ul                  /* 16 MiB: table pages (2 MiB) */
#define TBL_END    0x1200000ul
#define FR(n)      (0x1400000ul + (uint64_t)(n) * 4096)    /* 20 MiB: data frames */
#define RAM_NEEDED 0x2000000ul                  /* 32 MiB */
#define VA_T       0x8000000000ul               /* PML4 slot 1: test pages */
#define BEYOND_RAM 0xF00000000ul                /* 60 GiB */
#define RWU        (PTE_P | PTE_W | PTE_U)
#define TF         (PTE_P | PTE_W | PTE_U)

/* written by guest_pre32 (pre32.S) before paging is enabled */
volatile int32_t pv_pre32_hello;
volatile uint32_t pv_pre32_done;

extern bool pvmock_active;
bool pvmock_install(void);
extern char __image_end[];

static struct hc_mmu_update batch[HC_MMU_UPDATE_MAX + 1] ALIGNED(16);
static unsigned nbatch;
static uint64_t hc_rdx;

static inline uint64_t pat(uint64_t pa, unsigned i) { return 0x5600000000000000ul | ((pa >> 12) << 16) | i; }
static inline uint64_t rd(uint64_t va) { return *(volatile uint64_t *)(uintptr_t)va; }
static inline void wr(uint64_t va, uint64_t v) { *(volatile uint64_t *)(uintptr_t)va = v; }

static int64_t hc(uint64_t nr, uint64_t a0, uint64_t a1) { return hypercall(nr, a0, a1, 0, 0, &hc_rdx); }
static void bq(const volatile uint64_t *entry, uint64_t val)
{
    batch[nbatch].ptr = (uint64_t)(uintptr_t)entry;
    batch[nbatch].val = val;
    nbatch++;
}
static int64_t bflush(void)
{
    int64_t r = hypercall(HC_MMU_UPDATE, (uint64_t)(uintptr_t)batch, nbatch, 0, 0, &hc_rdx);
    nbatch = 0;
    return r;
}
static int64_t update1(const volatile uint64_t *entry, uint64_t val)
{
    bq(entry, val);
    return bflush();
}

static const char *errname(int64_t r)
{
    switch (r) {
    case -HC_EPERM: return "-EPERM";
    case -HC_EFAULT: return "-EFAULT";
    case -HC_EINVAL: return "-EINVAL";
    case -HC_ENOSYS: return "-ENOSYS";
    default: return "?";
    }
}

/* result check; idx >= 0 also checks RDX */
static void expect_rc(const char *what, int64_t got, int64_t want, long idx)
{
    bool ok = got == want && (idx < 0 || hc_rdx == (uint64_t)idx);
    if (!ok) {
        CHECK(0, "%s: rax=%ld rdx=%lu, want rax=%ld%s", what, (long)got, hc_rdx, (long)want,
              idx >= 0 ? " and the failing index in rdx" : "");
    } else if (want < 0) {
        if (idx >= 0)
            printf("%s: %s rdx=%ld ok\n", what, errname(want), idx);
        else
            printf("%s: %s ok\n", what, errname(want));
    }
}

static void fill_frame(uint64_t pa)
{
    for (unsigned i = 0; i < 512; i++)
        ((volatile uint64_t *)(uintptr_t)pa)[i] = pat(pa, i);
}

/* ring 3: a hypercall must fail with -EPERM */
static void user_hypercall(void)
{
    uint64_t rax = HC_FLUSH_TLB;
    __asm__ volatile("vmcall" : "+a"(rax) :: "memory");
    user_exit(rax);
}

static bool find_swiftvmm(uint32_t *base, char sig0[13])
{
    uint32_t a, b, c, d;
    cpuid(0x40000000, 0, &a, &b, &c, &d);
    memcpy(sig0, &b, 4);
    memcpy(sig0 + 4, &c, 4);
    memcpy(sig0 + 8, &d, 4);
    sig0[12] = 0;
    for (int i = 0; i < 12; i++) {
        if (sig0[i] == 0) {             /* stop at the first NUL, e.g. "SwiftVMM" */
            sig0[i] = 0;
            break;
        }
        if (sig0[i] < 0x20 || sig0[i] > 0x7e || sig0[i] == '"')
            sig0[i] = '.';
    }
    for (uint32_t leaf = 0x40000000; leaf < 0x40010000; leaf += 0x100) {
        cpuid(leaf, 0, &a, &b, &c, &d);
        if (b == SVM_SIG_EBX && c == SVM_SIG_ECX && d == SVM_SIG_EDX && a >= leaf + 1) {
            *base = leaf;
            return true;
        }
    }
    return false;
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("pv_mmu: start\n");
    bool mock = cmdline_uint("pvmock", 0) != 0;
    uint32_t base = 0;
    char sig[13];
    bool found = find_swiftvmm(&base, sig);
    bool offered = false;
    if (found) {
        uint32_t feat = 0;
        cpuid(base + 1, 0, &feat, 0, 0, 0);
        offered = feat & SVM_FEAT_PV_MMU;
    }
    sys_init();
    trap_reset();
    if (mock && !found) {
        if (!pvmock_install()) {
            puts("FAIL pv_mmu: pvmock=1 needs the multiboot memory map\n");
            return 1;
        }
        puts("pv_mmu: using the in-guest hypercall model (pvmock=1), not a VMM\n");
    } else if (!found) {
        printf("pv_mmu: no SwiftVMM PV MMU (hypervisor signature \"%s\")\n", sig);
        return 3;
    } else if (!offered) {
        printf("pv_mmu: no SwiftVMM PV MMU (hypervisor signature \"%s\", PV MMU not offered: run with --mmu paravirt)\n",
               sig);
        return 3;
    }
    if (is_multiboot() && boot_info.have_mem && (uint64_t)boot_info.mem_upper * 1024 + 0x100000 < RAM_NEEDED) {
        printf("FAIL pv_mmu: needs %lu MiB of RAM\n", RAM_NEEDED >> 20);
        return 1;
    }
    if ((uintptr_t)__image_end > 0x200000) {
        puts("FAIL pv_mmu: image ends above 2 MiB\n");
        return 1;
    }

    /* ---- handshake: done before paging by guest_pre32 (multiboot), else now
     * (long-mode entry: before this kernel's first CR3 load) ---- */
    int64_t ver = pv_pre32_done ? pv_pre32_hello : hc(HC_PV_HELLO, HC_ABI_VERSION, 0);
    if (ver < 1) {
        printf("FAIL pv_mmu: HC_PV_HELLO returned %ld\n", (long)ver);
        return 1;
    }
    printf("pv_mmu: handshake ok, VMM ABI version %ld\n", (long)ver);
    expect_rc("HC_PV_HELLO with ABI version 99", hc(HC_PV_HELLO, 99, 0), -HC_EINVAL, -1);
    write_cr0(read_cr0() | CR0_WP);

    /* ---- all table pages, zeroed while still on the boot tables ---- */
    pt_pool_init(TBL, TBL_END);
    vpte_t *pml4 = pt_new(), *l3_id = pt_new(), *l2_id = pt_new(), *l1_low = pt_new(), *l1_tbl = pt_new();
    vpte_t *l3_t = pt_new(), *l2_t = pt_new(), *l1_t = pt_new(), *spare = pt_new();
    vpte_t *never = pt_new(), *badpin = pt_new();
    badpin[8] = FR(5) | PTE_P | PTE_W;          /* as a PD entry: FR(5) is no pinned PT */
    for (unsigned n = 0; n < 8; n++)
        fill_frame(FR(n));

    /* ---- pin the (empty) tables bottom-up ---- */
    struct { vpte_t *t; int level; } pins[] = {
        { l1_low, 1 }, { l1_tbl, 1 }, { l1_t, 1 }, { spare, 1 }, { l2_id, 2 }, { l2_t, 2 },
        { l3_id, 3 }, { l3_t, 3 }, { pml4, 4 },
    };
    int bad = check_failures;
    for (unsigned i = 0; i < sizeof pins / sizeof pins[0]; i++)
        expect_rc("HC_PIN_TABLE", hc(HC_PIN_TABLE, pt_pa(pins[i].t), (uint64_t)pins[i].level), 0, -1);
    expect_rc("HC_PIN_TABLE again, same level", hc(HC_PIN_TABLE, pt_pa(pml4), 4), 0, -1);
    if (check_failures == bad)
        printf("pv_mmu: %u empty tables pinned\n", (unsigned)(sizeof pins / sizeof pins[0]));
    expect_rc("HC_PIN_TABLE of a pinned PT as a PD", hc(HC_PIN_TABLE, pt_pa(l1_t), 2), -HC_EPERM, -1);
    expect_rc("HC_PIN_TABLE level 5", hc(HC_PIN_TABLE, pt_pa(never), 5), -HC_EINVAL, -1);
    expect_rc("HC_PIN_TABLE of a PD whose entry 8 is no pinned PT", hc(HC_PIN_TABLE, pt_pa(badpin), 2),
              -HC_EPERM, 8);
    /* pinned pages are read-only, even through the (unvalidated) boot tables */
    k_write(pt_pa(l1_t) + 8, FR(6) | RWU);
    expect_pf("store to a pinned table through the boot tables", PF_P | PF_W, pt_pa(l1_t) + 8, false);
    CHECK(l1_t[1] == 0, "pinned table changed by a faulting store: %lx", l1_t[1]);

    /* ---- build the address space with batched updates ---- */
    bad = check_failures;
    for (unsigned i = 0; i < 512; i++)              /* tables region: read-only 4 KiB pages */
        bq(&l1_tbl[i], (TBL + i * 4096ul) | PTE_P | PTE_U);
    int64_t r1 = bflush();
    expect_rc("HC_MMU_UPDATE 512 entries", r1, 512, -1);
    for (unsigned i = 256; i < 512; i++)            /* 1..2 MiB: the image */
        bq(&l1_low[i], (i * 4096ul) | RWU);
    int64_t r2 = bflush();
    expect_rc("HC_MMU_UPDATE 256 entries", r2, 256, -1);
    bq(&l2_id[0], pt_pa(l1_low) | TF);
    for (unsigned i = 1; i < 16; i++)               /* 2..32 MiB: 2 MiB pages, tables excepted */
        bq(&l2_id[i], i == TBL >> 21 ? pt_pa(l1_tbl) | TF : ((uint64_t)i << 21) | RWU | PTE_PS);
    bq(&l1_t[0], FR(0) | RWU);
    bq(&l1_t[1], FR(2) | RWU);
    bq(&l2_t[0], pt_pa(l1_t) | TF);
    bq(&l3_id[0], pt_pa(l2_id) | TF);
    bq(&l3_t[0], pt_pa(l2_t) | TF);
    bq(&pml4[0], pt_pa(l3_id) | TF);
    bq(&pml4[1], pt_pa(l3_t) | TF);
    unsigned n3 = nbatch;
    int64_t r3 = bflush();
    expect_rc("HC_MMU_UPDATE mixed batch", r3, n3, -1);
    if (check_failures == bad)
        printf("pv_mmu: address space built with 3 batches (512 + 256 + %u entries)\n", n3);

    /* ---- switch ---- */
    bad = check_failures;
    expect_rc("HC_NEW_BASEPTR", hc(HC_NEW_BASEPTR, pt_pa(pml4), 0), 0, -1);
    CHECK((read_cr3() & PTE_ADDR) == pt_pa(pml4), "CR3 after HC_NEW_BASEPTR: %lx", read_cr3());
    if (check_failures == bad)
        printf("pv_mmu: HC_NEW_BASEPTR ok, cr3=%lx\n", read_cr3() & PTE_ADDR);

    /* ---- reads and writes through the new mappings ---- */
    bad = check_failures;
    CHECK(rd(VA_T + 8) == pat(FR(0), 1), "read through a new mapping: %lx", rd(VA_T + 8));
    wr(VA_T + 16, 0xABCDEF);
    CHECK(rd(FR(0) + 16) == 0xABCDEF, "write through a new mapping, identity view");
    uint64_t e0 = l1_t[0];                          /* a pinned table, read through its RO mapping */
    CHECK((e0 & PTE_ADDR) == FR(0) && (e0 & PTE_A) && (e0 & PTE_D), "PTE read back: %lx", e0);
    if (check_failures == bad)
        puts("pv_mmu: read/write through new mappings, A/D visible in the pinned PT ok\n");
    k_write((uint64_t)(uintptr_t)&l1_t[0], 0);
    expect_pf("store to a pinned table through its read-only mapping", PF_P | PF_W, pt_pa(l1_t), false);

    /* ---- remap + HC_INVLPG, unmap, HC_FLUSH_TLB, VMMCALL ---- */
    bad = check_failures;
    expect_rc("remap", update1(&l1_t[0], FR(1) | RWU), 1, -1);
    expect_rc("HC_INVLPG", hc(HC_INVLPG, VA_T, 0), 0, -1);
    CHECK(rd(VA_T + 8) == pat(FR(1), 1), "remap + HC_INVLPG: %lx", rd(VA_T + 8));
    if (check_failures == bad)
        puts("pv_mmu: remap + HC_INVLPG ok\n");
    CHECK(rd(VA_T + 0x1008) == pat(FR(2), 1), "page 1 mapped");
    expect_rc("unmap", update1(&l1_t[1], 0), 1, -1);
    expect_rc("HC_INVLPG", hc(HC_INVLPG, VA_T + 0x1000, 0), 0, -1);
    k_read(VA_T + 0x1010);
    expect_pf("unmapped page: read", 0, VA_T + 0x1010, false);
    bad = check_failures;
    expect_rc("remap back", update1(&l1_t[0], FR(0) | RWU), 1, -1);
    expect_rc("HC_FLUSH_TLB", hc(HC_FLUSH_TLB, 0, 0), 0, -1);
    CHECK(rd(VA_T + 24) == pat(FR(0), 3), "remap + HC_FLUSH_TLB: %lx", rd(VA_T + 24));
    expect_rc("HC_INVLPG with VMMCALL", hypercall_vmmcall(HC_INVLPG, VA_T, 0, 0, 0, &hc_rdx), 0, -1);
    if (check_failures == bad)
        puts("pv_mmu: remap + HC_FLUSH_TLB, VMMCALL ok\n");

    /* ---- invalid updates ---- */
    /* 1. a writable mapping of a page-table page, in the middle of a batch */
    bq(&l1_t[2], FR(3) | RWU);
    bq(&l1_t[3], pt_pa(l1_t) | RWU);
    bq(&l1_t[4], FR(4) | RWU);
    expect_rc("HC_MMU_UPDATE mapping a pinned table writable (entry 1 of 3)", bflush(), -HC_EPERM, 1);
    CHECK(rd(VA_T + 0x2000) == pat(FR(3), 0), "entry 0 of the failed batch not applied");
    CHECK(l1_t[3] == 0 && l1_t[4] == 0, "entries 1, 2 of the failed batch applied: %lx %lx",
          l1_t[3], l1_t[4]);
    /* ... while a read-only mapping of it is fine */
    bad = check_failures;
    expect_rc("read-only mapping of a pinned table", update1(&l1_t[4], pt_pa(l1_t) | PTE_P | PTE_U), 1, -1);
    CHECK(rd(VA_T + 0x4000) == l1_t[0], "pinned PT read through a second mapping");
    if (check_failures == bad)
        puts("pv_mmu: read-only mapping of a pinned table ok\n");
    /* 2. a frame beyond RAM */
    expect_rc("HC_MMU_UPDATE leaf beyond RAM", update1(&l1_t[5], BEYOND_RAM | RWU), -HC_EFAULT, 0);
    CHECK(l1_t[5] == 0, "entry beyond RAM applied");
    /* 3. a page that was never pinned, and one that was unpinned */
    expect_rc("HC_MMU_UPDATE of a never-pinned page", update1(&never[1], FR(5) | RWU), -HC_EPERM, 0);
    expect_rc("HC_UNPIN_TABLE of an unreferenced table", hc(HC_UNPIN_TABLE, pt_pa(spare), 0), 0, -1);
    expect_rc("HC_MMU_UPDATE of an unpinned table", update1(&spare[0], FR(5) | RWU), -HC_EPERM, 0);
    expect_rc("HC_PIN_TABLE again", hc(HC_PIN_TABLE, pt_pa(spare), 1), 0, -1);
    /* other refusals */
    expect_rc("HC_PIN_TABLE of a page a validated leaf maps writable", hc(HC_PIN_TABLE, FR(5), 1), -HC_EPERM, 512);
    expect_rc("HC_UNPIN_TABLE of a referenced table", hc(HC_UNPIN_TABLE, pt_pa(l1_t), 0), -HC_EPERM, -1);
    expect_rc("HC_UNPIN_TABLE of the base pointer", hc(HC_UNPIN_TABLE, pt_pa(pml4), 0), -HC_EPERM, -1);
    expect_rc("HC_UNPIN_TABLE of a never-pinned page", hc(HC_UNPIN_TABLE, pt_pa(never), 0), -HC_EINVAL, -1);
    expect_rc("HC_NEW_BASEPTR of a PT", hc(HC_NEW_BASEPTR, pt_pa(l1_t), 0), -HC_EPERM, -1);
    expect_rc("HC_MMU_UPDATE misaligned ptr", update1((vpte_t *)((uintptr_t)&l1_t[6] + 4), 0), -HC_EINVAL, 0);
    for (unsigned i = 0; i <= HC_MMU_UPDATE_MAX; i++)
        bq(&l1_t[7], 0);
    expect_rc("HC_MMU_UPDATE count 513", bflush(), -HC_EINVAL, 0);
    expect_rc("unknown hypercall 0x53560099", hc(0x53560099, 0, 0), -HC_ENOSYS, -1);
    uint64_t ur = run_user(user_hypercall, pt_user_stack + PT_USER_STACK);
    expect_no_trap("hypercall from ring 3");
    if (ur == (uint64_t)-HC_EPERM)
        puts("hypercall from ring 3: -EPERM ok\n");
    else
        CHECK(0, "hypercall from ring 3 returned %lx", ur);
    if (pvmock_active) {
        puts("MOV CR3 to an unpinned page: not checked under the model\n");
    } else {
        __asm__ volatile(TRAP_ARM "1: mov %0, %%cr3\n\t 2:" :: "r"(pt_pa(never)) : "r11", "memory");
        if (trap_count == 1 && last_trap.vector == 13 && last_trap.error == 0 && last_trap.rip == trap_expect_rip)
            puts("MOV CR3 to an unpinned page: #GP(0) ok\n");
        else
            CHECK(0, "MOV CR3 to an unpinned page: traps=%lu vec=%ld err=%lx", trap_count,
                  (long)last_trap.vector, last_trap.error);
        trap_reset();
    }
    CHECK(rd(VA_T + 32) == pat(FR(0), 4) && (read_cr3() & PTE_ADDR) == pt_pa(pml4), "still alive after the refusals");
    return finish("pv_mmu");
}
