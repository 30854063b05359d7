/*
 * SwiftVMM test guests: optional system-level helpers for the interpreter
 * test guests: a GDT with user segments and a TSS, a 256-vector IDT whose
 * stubs all funnel into trap_dispatch(), and entering / leaving ring 3.
 */
#ifndef GUEST_SYS_H
#define GUEST_SYS_H

#include "runtime.h"

/* GDT layout installed by sys_init() */
#define SEL_KCODE     0x08    /* 64-bit code, DPL0 */
#define SEL_KDATA     0x10    /* flat data, DPL0 */
#define SEL_KCODE32   0x18    /* 32-bit code, DPL0 (compatibility mode) */
#define SEL_UCODE32   0x23    /* 32-bit code, DPL3 (STAR base 0x20) */
#define SEL_UDATA     0x2B    /* flat data, DPL3 */
#define SEL_UCODE     0x33    /* 64-bit code, DPL3 */
#define SEL_TSS       0x38    /* 64-bit TSS (16-byte descriptor) */
#define SEL_NPDATA    0x48    /* data, DPL0, NOT present (#NP / #SS tests) */
#define SEL_KCODE16   0x50    /* 16-bit code, base 0, limit 0xFFFF */
#define SEL_KDATA16   0x58    /* 16-bit data, base 0, limit 0xFFFF */

#define VEC_USER_EXIT 0x81    /* DPL3 gate: ring 3 returns to run_user()'s caller */

struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;    /* pushed by the CPU */
};

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t ist[8];        /* ist[1..7]; ist[0] is the reserved qword at offset 28 */
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};

struct trap_record {
    uint64_t vector, error, rip, cs, rsp, ss, rflags, cr2;
    uint64_t frame_addr;    /* where the trap frame was (which stack) */
};

extern struct tss64 sys_tss;
extern uint64_t sys_gdt[];
extern volatile struct trap_record last_trap;
extern volatile uint64_t trap_count;
/* If non-zero when a trap arrives: the trap is recorded and execution
 * resumes at this address (then it is cleared). */
extern volatile uint64_t trap_resume;
/* If set, called for every trap except VEC_USER_EXIT (after recording, before
 * trap_resume is applied). Return true if the hook handled the trap. */
extern bool (*trap_hook)(struct trap_frame *f);

/* Stacks (tops) set up by sys_init: RSP0 and IST1..IST3. */
#define SYS_STACK_SIZE 16384
extern uint8_t sys_kstack[SYS_STACK_SIZE], sys_ist1[SYS_STACK_SIZE],
               sys_ist2[SYS_STACK_SIZE], sys_ist3[SYS_STACK_SIZE];

void sys_init(void);
/* Points vector vec at its standard stub with the given gate DPL and IST index. */
void idt_set_gate(int vec, int dpl, int ist);
/* Points vector vec at an arbitrary 64-bit handler. */
void idt_set_raw(int vec, uint64_t handler, int dpl, int ist, int type);

/* Runs fn at CPL3 on the given stack (top, 16-byte aligned) with IF=0.
 * Returns the value fn passes to user_exit(). Pages must be user-accessible. */
uint64_t run_user(void (*fn)(void), void *stack_top);
NORETURN void user_exit(uint64_t value);        /* call at CPL3 */
NORETURN void user_return(uint64_t value);      /* call at CPL0 to abandon ring 3 */

/* Leaf paging entry mapping va under the current CR3 (level 1 = 4K PTE,
 * 2 = 2M PDE, 3 = 1G PDPTE), or NULL if not mapped. */
uint64_t *paging_leaf(uint64_t va, int *level);

static inline uint16_t read_cs(void) { uint16_t v; __asm__ volatile("mov %%cs, %0" : "=r"(v)); return v; }
static inline uint16_t read_ss(void) { uint16_t v; __asm__ volatile("mov %%ss, %0" : "=r"(v)); return v; }

/* Failure reporting used by the phase-2 guests. */
extern int check_failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL "); printf(__VA_ARGS__); printf("\n"); check_failures++; } } while (0)
int finish(const char *name);   /* prints PASS name / returns 0, or returns 1 */

#endif

/* Inline-asm prefix: arms trap_resume with local label 2 and stores the
 * address of local label 1 (the instruction expected to fault) in
 * trap_expect_rip. Clobbers r11. Usage:
 *   __asm__ volatile(TRAP_ARM "1: <insn>\n\t 2:" ::: "r11", "memory"); */
extern volatile uint64_t trap_expect_rip;
#define TRAP_ARM "lea 2f(%%rip), %%r11\n\t mov %%r11, trap_resume(%%rip)\n\t" \
                 "lea 1f(%%rip), %%r11\n\t mov %%r11, trap_expect_rip(%%rip)\n\t"

/* Clears the present bit of vector vec's gate (DPL and type kept). */
void idt_clear(int vec);
