/* softint: software interrupts and gate privilege checks.
 *   INT n from ring 3 to a DPL3 gate          -> delivered
 *   INT n from ring 3 to a DPL0 gate          -> #GP((n << 3) | 2)
 *   INT3 / INT 3 from ring 3, #BP gate DPL0   -> #GP(0x1A); DPL3 -> #BP
 *   INT n to a not-present DPL3 gate          -> #NP((n << 3) | 2)
 *   INT n from ring 0 to a DPL0 gate          -> delivered
 * (INTO is invalid in 64-bit mode and is not tested.)
 * IDT error codes: the architectural encoding is (n << 3) | 2 (IDT flag,
 * index = vector). QEMU TCG (at least 7.2) reports (n << 4) | 2 in 64-bit
 * mode; both are accepted and printed in a decoded form so the output is
 * the same on both. */
#include "sys.h"

#define USER_STACK_SIZE 8192
static uint8_t user_stack[USER_STACK_SIZE] ALIGNED(16);

static volatile uint64_t u_l1, u_l2, u_rax;
static volatile int ntraps;
static struct trap_frame last;

static bool hook(struct trap_frame *f)
{
    ntraps++;
    last = *f;
    if (f->vector == 0x41 || f->vector == 0x42 || f->vector == 3) {
        f->rax *= 3;        /* "return value" of the software interrupt */
        return true;
    }
    return false;           /* faults: resume at trap_resume */
}

/* Runs `insn` with RAX = 7, labels 1 (the instruction) and 2 (after it). */
#define TEST_FN(fname, insn)                                                       \
    static void fname(void)                                                        \
    {                                                                              \
        uint64_t rax = 7;                                                          \
        __asm__ volatile("lea 1f(%%rip), %%r11\n\t mov %%r11, u_l1(%%rip)\n\t"     \
                         "lea 2f(%%rip), %%r11\n\t mov %%r11, u_l2(%%rip)\n\t"     \
                         "mov %%r11, trap_resume(%%rip)\n\t"                       \
                         "1: " insn "\n\t 2:"                                      \
                         : "+a"(rax) :: "r11", "memory");                          \
        u_rax = rax;                                                               \
        trap_resume = 0;                                                           \
    }

TEST_FN(do_int41, "int $0x41")
TEST_FN(do_int42, "int $0x42")
TEST_FN(do_int43, "int $0x43")
TEST_FN(do_int3, "int3")
TEST_FN(do_int_3, ".byte 0xcd, 0x03")      /* INT imm8 with imm8 = 3 */

static void (*volatile user_body)(void);

static void user_main(void)
{
    user_body();
    user_exit(0);
}

static void run(const char *what, void (*body)(void), bool user, uint64_t vec, uint64_t err, bool fault)
{
    ntraps = 0;
    u_rax = 0;
    if (user) {
        user_body = body;
        run_user(user_main, user_stack + USER_STACK_SIZE);
    } else {
        body();
    }
    uint64_t want_rip = fault ? u_l1 : u_l2;
    uint64_t want_rax = fault ? 7 : 21;
    uint64_t want_cs = user ? SEL_UCODE : SEL_KCODE;
    uint64_t got_err = last.error;
    bool idt_err = (err & 3) == 2;
    if (idt_err && got_err == ((err >> 3) << 4 | 2))
        got_err = err;      /* QEMU TCG's 16-byte-scaled IDT index */
    bool ok = ntraps == 1 && last.vector == vec && got_err == err && last.rip == want_rip &&
              last.cs == want_cs && u_rax == want_rax;
    if (user)
        ok = ok && last.ss == SEL_UDATA;
    if (ok && idt_err)
        printf("%s: vec=%#lx err=IDT[%#lx] ok\n", what, last.vector, err >> 3);
    else if (ok)
        printf("%s: vec=%#lx err=%#lx ok\n", what, last.vector, last.error);
    else
        CHECK(0, "%s: traps=%d vec=%#lx err=%#lx rip=%lx cs=%lx ss=%lx rax=%lu (want vec=%#lx err=%#lx rip=%lx)",
              what, ntraps, last.vector, last.error, last.rip, last.cs, last.ss, u_rax, vec, err, want_rip);
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("softint: start\n");
    sys_init();
    paging_set_user_all();
    trap_hook = hook;

    idt_set_gate(0x41, 3, 0);
    idt_set_gate(0x42, 0, 0);
    idt_set_gate(0x43, 3, 0);
    idt_clear(0x43);

    run("int 0x41 from ring 3, DPL3 gate", do_int41, true, 0x41, 0, false);
    run("int 0x42 from ring 3, DPL0 gate", do_int42, true, 13, (0x42 << 3) | 2, true);
    run("int 0x42 from ring 0, DPL0 gate", do_int42, false, 0x42, 0, false);
    run("int 0x43 from ring 3, gate not present", do_int43, true, 11, (0x43 << 3) | 2, true);
    run("int3 from ring 3, #BP gate DPL0", do_int3, true, 13, (3 << 3) | 2, true);
    run("int 3 from ring 3, #BP gate DPL0", do_int_3, true, 13, (3 << 3) | 2, true);
    idt_set_gate(3, 3, 0);
    run("int3 from ring 3, #BP gate DPL3", do_int3, true, 3, 0, false);
    run("int 3 from ring 3, #BP gate DPL3", do_int_3, true, 3, 0, false);
    run("int3 from ring 0", do_int3, false, 3, 0, false);

    return finish("softint");
}
