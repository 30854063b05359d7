/* paging: builds its own 4-level page tables and checks U/S, R/W with
 * CR0.WP on and off, NX (EFER.NXE), accessed/dirty bits, 2 MiB pages and
 * INVLPG / CR3-reload TLB invalidation. */
#include "sys.h"

#define PTE_P   (1ull << 0)
#define PTE_W   (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_A   (1ull << 5)
#define PTE_D   (1ull << 6)
#define PTE_PS  (1ull << 7)
#define PTE_NX  (1ull << 63)
#define ADDR_MASK 0x000FFFFFFFFFF000ull

static uint64_t pml4[512] ALIGNED(4096);
static uint64_t pdpt[512] ALIGNED(4096);
static uint64_t pd[4][512] ALIGNED(4096);
static uint64_t pt[512] ALIGNED(4096);          /* 4 KiB pages for 4..6 MiB */
static uint64_t pdpt_hi[512] ALIGNED(4096);
static uint64_t pd_hi[512] ALIGNED(4096);

#define USER_STACK_SIZE 8192
static uint8_t user_stack[USER_STACK_SIZE] ALIGNED(16);

#define REGION   0x400000ull          /* identity, 4 KiB pages via pt[] */
#define P_SUP    (REGION + 0x1000)    /* supervisor only */
#define P_RO     (REGION + 0x2000)    /* read-only, user */
#define P_NX     (REGION + 0x3000)    /* no-execute */
#define P_AD     (REGION + 0x4000)    /* A/D bits start clear */
#define P_INV    (REGION + 0x5000)    /* remapped to PA P_INV_2 */
#define P_INV_2  (REGION + 0x6000)
#define P_NP     (REGION + 0x7000)    /* not present */
#define BIG_PA   0x600000ull          /* 2 MiB page aliased at BIG_VA */
#define BIG_VA   0x8000000000ull      /* PML4 slot 1 */

extern char __image_end[];

/* The CPU updates A/D bits behind the compiler's back: always access the
 * tables through volatile pointers. */
static volatile uint64_t *pte(uint64_t va) { return &pt[(va - REGION) >> 12]; }
#define VOL(x) (*(volatile uint64_t *)&(x))

static void build_tables(bool nx)
{
    pml4[0] = (uint64_t)(uintptr_t)pdpt | PTE_P | PTE_W | PTE_U;
    pml4[1] = (uint64_t)(uintptr_t)pdpt_hi | PTE_P | PTE_W | PTE_U;
    for (int i = 0; i < 4; i++) {
        pdpt[i] = (uint64_t)(uintptr_t)pd[i] | PTE_P | PTE_W | PTE_U;
        for (int j = 0; j < 512; j++)
            pd[i][j] = ((uint64_t)(i * 512 + j) << 21) | PTE_P | PTE_W | PTE_U | PTE_PS;
    }
    pd[0][REGION >> 21] = (uint64_t)(uintptr_t)pt | PTE_P | PTE_W | PTE_U;
    for (int k = 0; k < 512; k++)
        pt[k] = (REGION + ((uint64_t)k << 12)) | PTE_P | PTE_W | PTE_U;
    *pte(P_SUP) &= ~PTE_U;
    *pte(P_RO) &= ~PTE_W;
    if (nx)
        *pte(P_NX) |= PTE_NX;
    *pte(P_NP) = 0;
    pdpt_hi[0] = (uint64_t)(uintptr_t)pd_hi | PTE_P | PTE_W | PTE_U;
    pd_hi[0] = BIG_PA | PTE_P | PTE_W | PTE_U | PTE_PS;
}

static void expect_trap(const char *what, uint64_t err, uint64_t cr2, bool user)
{
    bool ok = trap_count == 1 && last_trap.vector == 14 && last_trap.error == err &&
              last_trap.cr2 == cr2 && last_trap.rip == trap_expect_rip &&
              ((last_trap.cs & 3) == 3) == user;
    if (ok)
        printf("%s: #PF err=%lx cr2=%lx ok\n", what, last_trap.error, last_trap.cr2);
    else
        CHECK(0, "%s: count=%lu vec=%lu err=%lx cr2=%lx rip=%lx cs=%lx (want #PF err=%lx cr2=%lx rip=%lx)",
              what, trap_count, last_trap.vector, last_trap.error, last_trap.cr2, last_trap.rip,
              last_trap.cs, err, cr2, trap_expect_rip);
    trap_count = 0;
    trap_resume = 0;
    last_trap.vector = ~0ull;
}

static void expect_no_trap(const char *what)
{
    CHECK(trap_count == 0, "%s: unexpected trap vec=%lu err=%lx cr2=%lx", what,
          last_trap.vector, last_trap.error, last_trap.cr2);
    trap_count = 0;
    trap_resume = 0;
}

/* ---- ring 3 accesses: op 0 = read, 1 = write ---- */
static volatile int user_op;
static volatile uint64_t user_addr;

static void user_fn(void)
{
    uint64_t v = 0xdead;
    if (user_op == 0)
        __asm__ volatile(TRAP_ARM "1: mov (%1), %0\n\t 2:" : "+r"(v) : "r"(user_addr) : "r11", "memory");
    else
        __asm__ volatile(TRAP_ARM "1: movq $0x5a5a, (%0)\n\t 2:" :: "r"(user_addr) : "r11", "memory");
    trap_resume = 0;
    user_exit(v);
}

static uint64_t user_access(int op, uint64_t addr)
{
    user_op = op;
    user_addr = addr;
    return run_user(user_fn, user_stack + USER_STACK_SIZE);
}

static void kernel_write(uint64_t addr, uint64_t v)
{
    __asm__ volatile(TRAP_ARM "1: mov %1, (%0)\n\t 2:" :: "r"(addr), "r"(v) : "r11", "memory");
    trap_resume = 0;
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("paging: start\n");
    if ((uintptr_t)__image_end > REGION) {
        printf("FAIL image too large (%p)\n", (void *)__image_end);
        return 1;
    }
    sys_init();
    last_trap.vector = ~0ull;

    uint32_t maxext = 0, edx = 0;
    cpuid(0x80000000, 0, &maxext, 0, 0, 0);
    if (maxext >= 0x80000001)
        cpuid(0x80000001, 0, 0, 0, 0, &edx);
    bool nx = (edx >> 20) & 1;
    if (nx)
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);

    /* test data, written through the runtime's identity map */
    *(volatile uint64_t *)P_RO = 0x1111;
    *(volatile uint64_t *)P_INV = 0xAAAA;
    *(volatile uint64_t *)P_INV_2 = 0xBBBB;
    *(volatile uint8_t *)P_NX = 0xC3;           /* ret */
    *(volatile uint64_t *)(BIG_PA + 0x1238) = 0;

    build_tables(nx);
    write_cr3((uint64_t)(uintptr_t)pml4);
    write_cr0(read_cr0() | CR0_WP);
    printf("paging: own tables loaded, cr3=%lx nx=%d\n", read_cr3(), nx ? 1 : 0);
    CHECK(*(volatile uint64_t *)P_RO == 0x1111, "read through new tables");

    /* accessed / dirty */
    volatile uint64_t *ad = (volatile uint64_t *)P_AD;
    CHECK((*pte(P_AD) & (PTE_A | PTE_D)) == 0, "A/D initially clear");
    (void)*ad;
    uint64_t after_read = *pte(P_AD);
    *ad = 42;
    uint64_t after_write = *pte(P_AD);
    printf("accessed/dirty: after read A=%d D=%d, after write A=%d D=%d\n",
           (int)((after_read >> 5) & 1), (int)((after_read >> 6) & 1),
           (int)((after_write >> 5) & 1), (int)((after_write >> 6) & 1));
    CHECK((after_read & PTE_A) && !(after_read & PTE_D), "PTE after read: %lx", after_read);
    CHECK((after_write & PTE_A) && (after_write & PTE_D), "PTE after write: %lx", after_write);
    CHECK(VOL(pd[0][REGION >> 21]) & PTE_A, "PDE (non-leaf) accessed bit: %lx", VOL(pd[0][REGION >> 21]));
    CHECK(VOL(pml4[0]) & PTE_A, "PML4E accessed bit: %lx", VOL(pml4[0]));

    /* 2 MiB page alias */
    *(volatile uint64_t *)(BIG_VA + 0x1238) = 0x2222333344445555ull;
    uint64_t via_identity = *(volatile uint64_t *)(BIG_PA + 0x1238);
    uint64_t big_pde = VOL(pd_hi[0]);
    printf("2M page: wrote via %llx, read %lx via %llx; PDE A=%d D=%d\n", BIG_VA + 0x1238,
           via_identity, BIG_PA + 0x1238, (int)((big_pde >> 5) & 1), (int)((big_pde >> 6) & 1));
    CHECK(via_identity == 0x2222333344445555ull, "2M alias read %lx", via_identity);
    CHECK((big_pde & (PTE_A | PTE_D)) == (PTE_A | PTE_D), "2M PDE A/D: %lx", big_pde);
    CHECK(VOL(pml4[1]) & PTE_A, "PML4E[1] accessed bit: %lx", VOL(pml4[1]));

    /* U/S and R/W from ring 3 */
    uint64_t v = user_access(0, P_SUP);
    expect_trap("user read supervisor page", 0x5, P_SUP, true);
    v = user_access(0, P_NP);
    expect_trap("user read not-present page", 0x4, P_NP, true);
    v = user_access(1, P_RO);
    expect_trap("user write read-only page", 0x7, P_RO, true);
    v = user_access(0, P_RO);
    expect_no_trap("user read read-only page");
    printf("user read read-only page: %lx ok\n", v);
    CHECK(v == 0x1111, "user read of read-only page returned %lx", v);
    v = user_access(1, P_AD);
    expect_no_trap("user write user page");
    CHECK(*ad == 0x5a5a, "user write of user page: %lx", *ad);

    /* R/W from ring 0 with CR0.WP = 1 and 0 */
    kernel_write(P_RO, 0x3333);
    expect_trap("kernel write read-only page, CR0.WP=1", 0x3, P_RO, false);
    CHECK(*(volatile uint64_t *)P_RO == 0x1111, "read-only page changed with WP=1");
    write_cr0(read_cr0() & ~CR0_WP);
    kernel_write(P_RO, 0x4444);
    expect_no_trap("kernel write read-only page, CR0.WP=0");
    printf("kernel write read-only page, CR0.WP=0: value now %lx ok\n", *(volatile uint64_t *)P_RO);
    CHECK(*(volatile uint64_t *)P_RO == 0x4444, "write with WP=0 did not land");
    write_cr0(read_cr0() | CR0_WP);

    /* NX */
    if (nx) {
        __asm__ volatile(TRAP_ARM "1: jmp *%0\n\t 2:" :: "r"(P_NX) : "r11", "memory");
        trap_expect_rip = P_NX;
        expect_trap("execute NX page", 0x11, P_NX, false);
        *pte(P_NX) &= ~PTE_NX;
        invlpg((void *)P_NX);
        ((void (*)(void))P_NX)();
        expect_no_trap("execute page after clearing NX");
        puts("execute page after clearing NX + invlpg: ok\n");
    } else {
        puts("NX not supported: skipped\n");
    }

    /* INVLPG and CR3 reload */
    volatile uint64_t *inv = (volatile uint64_t *)P_INV;
    uint64_t first = *inv;
    *pte(P_INV) = P_INV_2 | PTE_P | PTE_W | PTE_U;
    invlpg((void *)P_INV);
    uint64_t second = *inv;
    *pte(P_INV) = P_INV | PTE_P | PTE_W | PTE_U;
    write_cr3(read_cr3());
    uint64_t third = *inv;
    printf("invlpg: before %lx, after remap+invlpg %lx, after restore+cr3 reload %lx\n", first, second, third);
    CHECK(first == 0xAAAA && second == 0xBBBB && third == 0xAAAA, "TLB invalidation");

    return finish("paging");
}
