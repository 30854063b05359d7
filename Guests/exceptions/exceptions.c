/* exceptions: installs a 64-bit IDT, raises exceptions and checks vector,
 * error code, faulting RIP and CR2; the handler resumes after the faulting
 * instruction (address taken from a label). */
#include "sys.h"

static volatile uint64_t expect_rip;

#define USER_STACK_SIZE 8192
static uint8_t user_stack[USER_STACK_SIZE] ALIGNED(16);

/* Arms the fixup: resume at 2f, expected RIP = 1f (the faulting instruction). */
#define ARM "lea 2f(%%rip), %%r11\n\t mov %%r11, trap_resume(%%rip)\n\t" \
            "lea 1f(%%rip), %%r11\n\t mov %%r11, expect_rip(%%rip)\n\t"

static void report(const char *what, uint64_t vec, uint64_t err, uint64_t cr2, bool rip_after)
{
    bool ok = trap_count == 1 && last_trap.vector == vec && last_trap.error == err &&
              last_trap.cr2 == cr2 && trap_resume == 0;
    uint64_t want_rip = expect_rip;
    if (rip_after) {
        /* traps (int3): RIP points after the instruction = the resume label */
        want_rip = 0;
    }
    if (want_rip && last_trap.rip != want_rip)
        ok = false;
    if (ok) {
        printf("vec=%lu err=%lx cr2=%lx ok (%s)\n", last_trap.vector, last_trap.error, last_trap.cr2, what);
    } else {
        CHECK(0, "%s: count=%lu vec=%lu err=%lx cr2=%lx rip=%lx (want vec=%lu err=%lx cr2=%lx rip=%lx)",
              what, trap_count, last_trap.vector, last_trap.error, last_trap.cr2, last_trap.rip,
              vec, err, cr2, want_rip);
    }
    trap_count = 0;
    trap_resume = 0;
    last_trap.vector = ~0ull;
}

static void t_de(void)
{
    uint32_t q = 0;
    __asm__ volatile(ARM "xor %%edx, %%edx\n\t mov $7, %%eax\n\t"
                     "1: divl %1\n\t 2:" : "=&a"(q) : "r"(0u) : "rdx", "r11", "memory");
    (void)q;
    report("#DE divide error", 0, 0, 0, false);
}

static void t_bp(void)
{
    uint64_t after;
    __asm__ volatile(ARM "1: int3\n\t 2: lea 2b(%%rip), %0" : "=r"(after) :: "r11", "memory");
    bool ok = last_trap.rip == after;
    report("#BP breakpoint", 3, 0, 0, true);
    CHECK(ok, "#BP: rip should point after int3");
}

static void t_ud(void)
{
    __asm__ volatile(ARM "1: ud2\n\t 2:" ::: "r11", "memory");
    report("#UD invalid opcode", 6, 0, 0, false);
}

static void t_np(void)
{
    __asm__ volatile(ARM "mov $0x48, %%eax\n\t 1: mov %%ax, %%ds\n\t 2:" ::: "rax", "r11", "memory");
    report("#NP segment not present (mov ds, 0x48)", 11, 0x48, 0, false);
}

static void t_ss(void)
{
    __asm__ volatile(ARM "mov $0x48, %%eax\n\t 1: mov %%ax, %%ss\n\t 2:" ::: "rax", "r11", "memory");
    report("#SS stack segment (mov ss, 0x48)", 12, 0x48, 0, false);
}

static void t_gp_sel(void)
{
    __asm__ volatile(ARM "mov $0x1230, %%eax\n\t 1: mov %%ax, %%ds\n\t 2:" ::: "rax", "r11", "memory");
    report("#GP bad selector (mov ds, 0x1230)", 13, 0x1230, 0, false);
}

static void t_gp_noncanon(void)
{
    __asm__ volatile(ARM "movabs $0x8000000000000000, %%rax\n\t 1: mov (%%rax), %%rax\n\t 2:"
                     ::: "rax", "r11", "memory");
    report("#GP non-canonical address", 13, 0, 0, false);
}

#define UNMAPPED 0x00007F0000000000ull   /* PML4 slot 254: never mapped */
#define TESTREGION 0x40000000ull        /* 1 GiB: one 2 MiB page we modify */

static void t_pf_read(void)
{
    __asm__ volatile(ARM "1: mov (%0), %%rax\n\t 2:" :: "r"(UNMAPPED + 0x123) : "rax", "r11", "memory");
    report("#PF read, not present", 14, 0x0, UNMAPPED + 0x123, false);
}

static void t_pf_write(void)
{
    __asm__ volatile(ARM "1: movq $1, (%0)\n\t 2:" :: "r"(UNMAPPED + 0x456) : "r11", "memory");
    report("#PF write, not present", 14, 0x2, UNMAPPED + 0x456, false);
}

static void t_pf_write_ro(void)
{
    __asm__ volatile(ARM "1: movl $1, (%0)\n\t 2:" :: "r"(TESTREGION + 0x10) : "r11", "memory");
    report("#PF write, present read-only (CR0.WP=1)", 14, 0x3, TESTREGION + 0x10, false);
}

static void t_pf_fetch_np(void)
{
    /* jump (not call) so nothing is left on the stack */
    __asm__ volatile(ARM "1: jmp *%0\n\t 2:" :: "r"(UNMAPPED + 0x789) : "r11", "memory");
    expect_rip = UNMAPPED + 0x789;
    report("#PF fetch, not present (EFER.NXE=1)", 14, 0x10, UNMAPPED + 0x789, false);
}

static void t_pf_fetch_nx(void)
{
    __asm__ volatile(ARM "1: jmp *%0\n\t 2:" :: "r"(TESTREGION + 0x20) : "r11", "memory");
    expect_rip = TESTREGION + 0x20;
    report("#PF fetch, present NX page", 14, 0x11, TESTREGION + 0x20, false);
}

static volatile uint64_t user_expect_rip;

static void user_read_supervisor(void)
{
    __asm__ volatile("lea 2f(%%rip), %%r11\n\t mov %%r11, trap_resume(%%rip)\n\t"
                     "lea 1f(%%rip), %%r11\n\t mov %%r11, user_expect_rip(%%rip)\n\t"
                     "1: mov (%0), %%rax\n\t 2:" :: "r"(TESTREGION + 0x30) : "rax", "r11", "memory");
    user_exit(0x77);
}

static void t_pf_user(void)
{
    uint64_t rv = run_user(user_read_supervisor, user_stack + USER_STACK_SIZE);
    expect_rip = user_expect_rip;
    bool cs_ok = (last_trap.cs & 3) == 3;
    report("#PF user read of supervisor page", 14, 0x5, TESTREGION + 0x30, false);
    CHECK(rv == 0x77, "run_user returned %lx", rv);
    CHECK(cs_ok, "#PF from user: saved CS RPL should be 3");
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("exceptions: start\n");
    sys_init();
    last_trap.vector = ~0ull;

    t_de();
    t_bp();
    t_ud();
    t_np();
    t_ss();
    t_gp_sel();
    t_gp_noncanon();
    t_pf_read();
    t_pf_write();

    /* make everything user-accessible, then turn the 2 MiB page at 1 GiB into
     * a supervisor-only, read-only page */
    paging_set_user_all();
    int level = 0;
    uint64_t *e = paging_leaf(TESTREGION, &level);
    CHECK(e != NULL, "no mapping for 0x%llx", TESTREGION);
    if (!e)
        return finish("exceptions");
    *e &= ~(uint64_t)(2 | 4);
    invlpg((void *)TESTREGION);
    write_cr0(read_cr0() | CR0_WP);
    t_pf_write_ro();
    t_pf_user();

    uint32_t edx = 0, maxext = 0;
    cpuid(0x80000000, 0, &maxext, 0, 0, 0);
    if (maxext >= 0x80000001)
        cpuid(0x80000001, 0, 0, 0, 0, &edx);
    if (edx & (1u << 20)) {
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
        t_pf_fetch_np();
        *e |= 1ull << 63;
        invlpg((void *)TESTREGION);
        t_pf_fetch_nx();
    } else {
        puts("NX not supported: fetch tests skipped\n");
    }
    return finish("exceptions");
}
