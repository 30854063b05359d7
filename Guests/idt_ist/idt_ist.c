/* idt_ist: interrupt stack table and the TSS.RSP0 stack switch.
 *   vector 0x40: DPL0 gate, IST1  (int from ring 0 -> frame on the IST1 stack)
 *   vector 0x41: DPL3 gate, no IST (int from ring 3 -> frame on TSS.RSP0)
 *   vector 0x42: DPL3 gate, IST2  (int from ring 3 -> frame on IST2, not RSP0)
 *   #UD (6)   : IST3               (exception from ring 0 -> IST3)
 */
#include "sys.h"

#define USER_STACK_SIZE 8192
static uint8_t user_stack[USER_STACK_SIZE] ALIGNED(16);

struct seen {
    uint64_t vector, frame, rsp, cs, ss, rip, handler_rsp;
};
static volatile struct seen seen;
static volatile uint64_t before_rsp;

static bool hook(struct trap_frame *f)
{
    uint64_t rsp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
    seen.vector = f->vector;
    seen.frame = (uint64_t)(uintptr_t)f;
    seen.rsp = f->rsp;
    seen.cs = f->cs;
    seen.ss = f->ss;
    seen.rip = f->rip;
    seen.handler_rsp = rsp;
    if (f->vector == 6)
        f->rip += 2;    /* skip ud2 */
    return true;
}

static bool on_stack(uint64_t a, const uint8_t *stack)
{
    uint64_t lo = (uint64_t)(uintptr_t)stack;
    return a >= lo && a < lo + SYS_STACK_SIZE;
}

static const char *stack_name(uint64_t a)
{
    if (on_stack(a, sys_ist1)) return "IST1";
    if (on_stack(a, sys_ist2)) return "IST2";
    if (on_stack(a, sys_ist3)) return "IST3";
    if (on_stack(a, sys_kstack)) return "RSP0";
    if (a >= (uint64_t)(uintptr_t)user_stack && a < (uint64_t)(uintptr_t)user_stack + USER_STACK_SIZE)
        return "user";
    return "boot";
}

/* The CPU pushes SS first, at (stack top - 8) after aligning to 16. */
static void check_frame(const char *what, uint64_t vec, const uint8_t *stack, uint64_t want_cs)
{
    uint64_t top = (uint64_t)(uintptr_t)stack + SYS_STACK_SIZE;
    uint64_t ss_slot = seen.frame + __builtin_offsetof(struct trap_frame, ss);
    printf("%s: vec=%#lx frame on %s, handler on %s, cs=%#lx ss=%#lx\n", what, seen.vector,
           stack_name(seen.frame), stack_name(seen.handler_rsp), seen.cs, seen.ss);
    CHECK(seen.vector == vec, "%s: vector %lx", what, seen.vector);
    CHECK(on_stack(seen.frame, stack) && ss_slot == top - 8,
          "%s: frame at %lx, SS slot %lx, stack top %lx", what, seen.frame, ss_slot, top);
    CHECK(on_stack(seen.handler_rsp, stack), "%s: handler rsp %lx not on the expected stack", what, seen.handler_rsp);
    CHECK(seen.cs == want_cs, "%s: cs=%lx want %lx", what, seen.cs, want_cs);
}

static volatile uint64_t user_rsp_at_int;

static void user_int41(void)
{
    __asm__ volatile("mov %%rsp, user_rsp_at_int(%%rip)\n\t int $0x41" ::: "memory");
    user_exit(0x41);
}

static void user_int42(void)
{
    __asm__ volatile("mov %%rsp, user_rsp_at_int(%%rip)\n\t int $0x42" ::: "memory");
    user_exit(0x42);
}

static void user_test(const char *what, void (*fn)(void), uint64_t vec, const uint8_t *stack)
{
    uint64_t rv = run_user(fn, user_stack + USER_STACK_SIZE);
    check_frame(what, vec, stack, SEL_UCODE);
    CHECK(seen.rsp == user_rsp_at_int, "%s: saved rsp %lx, want %lx", what, seen.rsp, user_rsp_at_int);
    CHECK(seen.ss == SEL_UDATA, "%s: saved ss %lx", what, seen.ss);
    CHECK(rv == vec, "%s: run_user returned %lx", what, rv);
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("idt_ist: start\n");
    sys_init();
    paging_set_user_all();
    idt_set_gate(0x40, 0, 1);
    idt_set_gate(0x41, 3, 0);
    idt_set_gate(0x42, 3, 2);
    idt_set_gate(6, 0, 3);
    trap_hook = hook;

    /* ring 0 -> IST1 */
    __asm__ volatile("mov %%rsp, before_rsp(%%rip)\n\t int $0x40" ::: "memory");
    check_frame("int 0x40 (ring 0, IST1)", 0x40, sys_ist1, SEL_KCODE);
    CHECK(seen.rsp == before_rsp, "int 0x40: saved rsp %lx, want %lx", seen.rsp, before_rsp);
    CHECK(seen.ss == SEL_KDATA, "int 0x40: saved ss %lx", seen.ss);

    /* exception from ring 0 -> IST3 */
    __asm__ volatile("mov %%rsp, before_rsp(%%rip)\n\t ud2" ::: "memory");
    check_frame("#UD (ring 0, IST3)", 6, sys_ist3, SEL_KCODE);
    CHECK(seen.rsp == before_rsp, "#UD: saved rsp %lx, want %lx", seen.rsp, before_rsp);

    /* ring 3 -> ring 0: TSS.RSP0, or the IST stack when the gate has one */
    user_test("int 0x41 (ring 3, RSP0)", user_int41, 0x41, sys_kstack);
    user_test("int 0x42 (ring 3, IST2)", user_int42, 0x42, sys_ist2);

    /* move RSP0 and check the CPU follows it */
    uint64_t old_rsp0 = sys_tss.rsp[0];
    sys_tss.rsp[0] = (uint64_t)(uintptr_t)(sys_ist3 + SYS_STACK_SIZE);
    user_test("int 0x41 (ring 3, RSP0 moved to IST3 stack)", user_int41, 0x41, sys_ist3);
    sys_tss.rsp[0] = old_rsp0;

    return finish("idt_ist");
}
