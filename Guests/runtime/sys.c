/* SwiftVMM test guests: GDT/TSS/IDT setup and trap dispatch. */
#include "sys.h"

struct tss64 sys_tss;
_Static_assert(sizeof(struct tss64) == 104, "TSS layout");
_Static_assert(__builtin_offsetof(struct tss64, ist[1]) == 36, "TSS IST1 offset");
uint8_t sys_kstack[SYS_STACK_SIZE] ALIGNED(16);
uint8_t sys_ist1[SYS_STACK_SIZE] ALIGNED(16);
uint8_t sys_ist2[SYS_STACK_SIZE] ALIGNED(16);
uint8_t sys_ist3[SYS_STACK_SIZE] ALIGNED(16);

uint64_t sys_gdt[13] ALIGNED(16) = {
    0x0000000000000000ull,  /* 0x00 null */
    0x00AF9A000000FFFFull,  /* 0x08 code64 DPL0 */
    0x00CF92000000FFFFull,  /* 0x10 data DPL0 */
    0x00CF9A000000FFFFull,  /* 0x18 code32 DPL0 */
    0x00CFFA000000FFFFull,  /* 0x20 code32 DPL3 */
    0x00CFF2000000FFFFull,  /* 0x28 data DPL3 */
    0x00AFFA000000FFFFull,  /* 0x30 code64 DPL3 */
    0, 0,                   /* 0x38 TSS (filled in) */
    0x00CF12000000FFFFull,  /* 0x48 data DPL0, not present */
    0x00009A000000FFFFull,  /* 0x50 code16 */
    0x000092000000FFFFull,  /* 0x58 data16 */
    0,
};

struct __attribute__((packed)) idt_gate {
    uint16_t off0;
    uint16_t sel;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t off1;
    uint32_t off2;
    uint32_t zero;
};

static struct idt_gate sys_idt[256] ALIGNED(16);

struct __attribute__((packed)) desc_ptr {
    uint16_t limit;
    uint64_t base;
};

extern char sys_trap_stubs[];
void sys_load(void *gdt_desc, void *idt_desc, uint16_t tss_sel);
void trap_dispatch(struct trap_frame *f);

volatile struct trap_record last_trap;
volatile uint64_t trap_count;
volatile uint64_t trap_resume;
volatile uint64_t trap_expect_rip;
bool (*trap_hook)(struct trap_frame *f);
int check_failures;

void idt_set_raw(int vec, uint64_t h, int dpl, int ist, int type)
{
    struct idt_gate *g = &sys_idt[vec & 0xff];
    g->off0 = (uint16_t)h;
    g->sel = SEL_KCODE;
    g->ist = (uint8_t)(ist & 7);
    g->type_attr = (uint8_t)(0x80 | ((dpl & 3) << 5) | (type & 0xf));
    g->off1 = (uint16_t)(h >> 16);
    g->off2 = (uint32_t)(h >> 32);
    g->zero = 0;
}

void idt_set_gate(int vec, int dpl, int ist)
{
    idt_set_raw(vec, (uint64_t)(uintptr_t)(sys_trap_stubs + 16 * (vec & 0xff)), dpl, ist, 0xE);
}

void sys_init(void)
{
    memset(&sys_tss, 0, sizeof sys_tss);
    sys_tss.rsp[0] = (uint64_t)(uintptr_t)(sys_kstack + SYS_STACK_SIZE);
    sys_tss.ist[1] = (uint64_t)(uintptr_t)(sys_ist1 + SYS_STACK_SIZE);
    sys_tss.ist[2] = (uint64_t)(uintptr_t)(sys_ist2 + SYS_STACK_SIZE);
    sys_tss.ist[3] = (uint64_t)(uintptr_t)(sys_ist3 + SYS_STACK_SIZE);
    sys_tss.iomap_base = sizeof sys_tss;

    uint64_t base = (uint64_t)(uintptr_t)&sys_tss, limit = sizeof sys_tss - 1;
    sys_gdt[7] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    sys_gdt[8] = base >> 32;

    for (int v = 0; v < 256; v++)
        idt_set_gate(v, 0, 0);
    idt_set_gate(VEC_USER_EXIT, 3, 0);

    struct desc_ptr gdtr = { sizeof sys_gdt - 1, (uint64_t)(uintptr_t)sys_gdt };
    struct desc_ptr idtr = { sizeof sys_idt - 1, (uint64_t)(uintptr_t)sys_idt };
    sys_load(&gdtr, &idtr, SEL_TSS);
}

void trap_dispatch(struct trap_frame *f)
{
    if (f->vector == VEC_USER_EXIT && (f->cs & 3) == 3)
        user_return(f->rdi);

    last_trap.vector = f->vector;
    last_trap.error = f->error;
    last_trap.rip = f->rip;
    last_trap.cs = f->cs;
    last_trap.rsp = f->rsp;
    last_trap.ss = f->ss;
    last_trap.rflags = f->rflags;
    last_trap.cr2 = f->vector == 14 ? read_cr2() : 0;
    last_trap.frame_addr = (uint64_t)(uintptr_t)f;
    trap_count++;

    if (trap_hook && trap_hook(f))
        return;
    if (trap_resume) {
        f->rip = trap_resume;
        trap_resume = 0;
        return;
    }
    printf("FAIL unexpected trap vec=%lu err=%lx rip=%lx cs=%lx cr2=%lx\n",
           f->vector, f->error, f->rip, f->cs, read_cr2());
    exit(1);
}

uint64_t *paging_leaf(uint64_t va, int *level)
{
    uint64_t *t = (uint64_t *)(uintptr_t)(read_cr3() & 0x000FFFFFFFFFF000ull);
    for (int lvl = 4; lvl >= 1; lvl--) {
        uint64_t *e = &t[(va >> (12 + 9 * (lvl - 1))) & 511];
        if (!(*e & 1))
            return NULL;
        if (lvl == 1 || (lvl <= 3 && (*e & 0x80))) {
            if (level)
                *level = lvl;
            return e;
        }
        t = (uint64_t *)(uintptr_t)(*e & 0x000FFFFFFFFFF000ull);
    }
    return NULL;
}

int finish(const char *name)
{
    if (check_failures) {
        printf("FAIL %s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("PASS %s\n", name);
    return 0;
}

void idt_clear(int vec)
{
    sys_idt[vec & 0xff].type_attr &= 0x7f;     /* keep DPL/type, clear P */
}
