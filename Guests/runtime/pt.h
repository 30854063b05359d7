/*
 * SwiftVMM test guests: page-table building and fault-checking helpers for
 * the memory-virtualization guests (pt_torture, pt_selfwrite, tlb_thrash,
 * pv_mmu). Header only (static inline); include after sys.h. Additive: no
 * other runtime file depends on it.
 *
 * Tables are allocated from a bump pool of physical pages that must be
 * identity mapped while they are written (all guests keep the low 1 GiB
 * identity mapped). Every table access goes through volatile pointers: the
 * CPU (or the VMM) sets A/D bits behind the compiler's back.
 */
#ifndef GUEST_PT_H
#define GUEST_PT_H

#include "sys.h"

#define PTE_P     (1ul << 0)
#define PTE_W     (1ul << 1)
#define PTE_U     (1ul << 2)
#define PTE_PWT   (1ul << 3)
#define PTE_PCD   (1ul << 4)
#define PTE_A     (1ul << 5)
#define PTE_D     (1ul << 6)
#define PTE_PS    (1ul << 7)
#define PTE_G     (1ul << 8)
#define PTE_NX    (1ul << 63)
#define PTE_ADDR  0x000FFFFFFFFFF000ul

#define PF_P    0x1ul
#define PF_W    0x2ul
#define PF_U    0x4ul
#define PF_RSVD 0x8ul
#define PF_I    0x10ul

#define CR4_PGE (1ul << 7)

typedef volatile uint64_t vpte_t;

/* ---- table pool ---- */
static uint64_t pt_pool_next UNUSED, pt_pool_end UNUSED;

static inline void pt_pool_init(uint64_t base, uint64_t end)
{
    pt_pool_next = base;
    pt_pool_end = end;
}

static inline vpte_t *pt_new(void)
{
    if (pt_pool_next + 4096 > pt_pool_end) {
        printf("FAIL page-table pool exhausted at %lx\n", pt_pool_next);
        exit(1);
    }
    vpte_t *t = (vpte_t *)(uintptr_t)pt_pool_next;
    pt_pool_next += 4096;
    for (int i = 0; i < 512; i++)
        t[i] = 0;
    return t;
}

static inline uint64_t pt_pa(const vpte_t *t) { return (uint64_t)(uintptr_t)t; }
static inline vpte_t *pt_table(uint64_t entry) { return (vpte_t *)(uintptr_t)(entry & PTE_ADDR); }
static inline unsigned pt_index(uint64_t va, int level) { return (unsigned)(va >> (12 + 9 * (level - 1))) & 511; }

/* Entry for va at `level` (4 = PML4E ... 1 = PTE) under root, creating
 * missing intermediate tables with flags tf. Stops (returns NULL) at a
 * large-page leaf above `level`. */
static inline vpte_t *pt_entry(vpte_t *root, uint64_t va, int level, uint64_t tf)
{
    vpte_t *t = root;
    for (int l = 4; l > level; l--) {
        vpte_t *e = &t[pt_index(va, l)];
        if (!(*e & PTE_P))
            *e = pt_pa(pt_new()) | tf;
        else if (l <= 3 && (*e & PTE_PS))
            return NULL;
        t = pt_table(*e);
    }
    return &t[pt_index(va, level)];
}

static inline void pt_map(vpte_t *root, uint64_t va, uint64_t pa, uint64_t flags, int level, uint64_t tf)
{
    *pt_entry(root, va, level, tf) = pa | flags;
}

/* ---- trap expectations (on top of sys.h's trap recording) ---- */
static inline void trap_reset(void)
{
    trap_count = 0;
    trap_resume = 0;
    last_trap.vector = ~0ul;
}

/* Checks that exactly one #PF with this error code and CR2 happened at the
 * armed instruction (ring 3 if user). Prints "<what>: #PF err=.. cr2=.. ok". */
static inline bool expect_pf(const char *what, uint64_t err, uint64_t cr2, bool user)
{
    bool ok = trap_count == 1 && last_trap.vector == 14 && last_trap.error == err &&
              last_trap.cr2 == cr2 && last_trap.rip == trap_expect_rip &&
              ((last_trap.cs & 3) == 3) == user;
    if (ok)
        printf("%s: #PF err=%lx cr2=%lx ok\n", what, last_trap.error, last_trap.cr2);
    else
        CHECK(0, "%s: traps=%lu vec=%ld err=%lx cr2=%lx rip=%lx cs=%lx (want #PF err=%lx cr2=%lx rip=%lx)",
              what, trap_count, (long)last_trap.vector, last_trap.error, last_trap.cr2, last_trap.rip,
              last_trap.cs, err, cr2, trap_expect_rip);
    trap_reset();
    return ok;
}

static inline bool expect_no_trap(const char *what)
{
    bool ok = trap_count == 0;
    CHECK(ok, "%s: unexpected trap vec=%ld err=%lx cr2=%lx rip=%lx", what,
          (long)last_trap.vector, last_trap.error, last_trap.cr2, last_trap.rip);
    trap_reset();
    return ok;
}

/* ---- guarded accesses (a fault resumes after the access) ---- */
#define PT_POISON 0xBADBADBADBADBADBul

static inline uint64_t k_read(uint64_t a)
{
    uint64_t v = PT_POISON;
    __asm__ volatile(TRAP_ARM "1: mov (%1), %0\n\t 2:" : "+r"(v) : "r"(a) : "r11", "memory");
    trap_resume = 0;
    return v;
}

static inline void k_write(uint64_t a, uint64_t v)
{
    __asm__ volatile(TRAP_ARM "1: mov %1, (%0)\n\t 2:" :: "r"(a), "r"(v) : "r11", "memory");
    trap_resume = 0;
}

/* Calls code at a (which must preserve everything but RAX and return); on
 * a fetch fault resumes after the call with RAX unchanged. The fault's RIP
 * is a itself, so trap_expect_rip is set to a. */
static inline uint64_t k_exec(uint64_t a)
{
    uint64_t v = PT_POISON;
    __asm__ volatile(TRAP_ARM "lea 3f(%%rip), %%r11\n\t push %%r11\n\t"
                     "1: jmp *%1\n\t 2: add $8, %%rsp\n\t 3:"
                     : "+a"(v) : "r"(a) : "r11", "memory");
    trap_resume = 0;
    trap_expect_rip = a;
    return v;
}

/* Code for k_exec targets: mov $0x600d, %eax; ret */
static const uint8_t pt_exec_stub[6] UNUSED = { 0xB8, 0x0D, 0x60, 0x00, 0x00, 0xC3 };
#define PT_EXEC_OK 0x600dul

/* ---- ring-3 accesses: the identity map must be user accessible ---- */
#define PT_USER_STACK 16384
static uint8_t pt_user_stack[PT_USER_STACK] ALIGNED(16) UNUSED;
static volatile int pt_user_op UNUSED;        /* 0 read, 1 write */
static volatile uint64_t pt_user_addr UNUSED, pt_user_val UNUSED;

static UNUSED void pt_user_fn(void)
{
    uint64_t v = PT_POISON;
    if (pt_user_op == 0)
        __asm__ volatile(TRAP_ARM "1: mov (%1), %0\n\t 2:" : "+r"(v) : "r"(pt_user_addr) : "r11", "memory");
    else
        __asm__ volatile(TRAP_ARM "1: mov %1, (%0)\n\t 2:" :: "r"(pt_user_addr), "r"(pt_user_val) : "r11", "memory");
    trap_resume = 0;
    user_exit(v);
}

static inline uint64_t u_read(uint64_t a)
{
    pt_user_op = 0;
    pt_user_addr = a;
    return run_user(pt_user_fn, pt_user_stack + PT_USER_STACK);
}

static inline void u_write(uint64_t a, uint64_t v)
{
    pt_user_op = 1;
    pt_user_addr = a;
    pt_user_val = v;
    (void)run_user(pt_user_fn, pt_user_stack + PT_USER_STACK);
}

/* ---- CPU features ---- */
static inline uint32_t cpuid_ext_edx(void)
{
    uint32_t max = 0, edx = 0;
    cpuid(0x80000000, 0, &max, 0, 0, 0);
    if (max >= 0x80000001)
        cpuid(0x80000001, 0, 0, 0, 0, &edx);
    return edx;
}
static inline bool cpu_has_nx(void) { return (cpuid_ext_edx() >> 20) & 1; }
static inline bool cpu_has_1g(void) { return (cpuid_ext_edx() >> 26) & 1; }
static inline bool cpu_has_pge(void)
{
    uint32_t edx = 0;
    cpuid(1, 0, 0, 0, 0, &edx);
    return (edx >> 13) & 1;
}

#endif
