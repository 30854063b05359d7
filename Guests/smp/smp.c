/* SMP test guest: starts the APs with INIT-SIPI-SIPI, then checks LOCK-prefixed
 * counting and a ticket spinlock on all CPUs, IPIs in every delivery mode and
 * shorthand, and a TLB shootdown. Only the BSP prints, after the counts are in,
 * so the output does not depend on how the CPUs interleave. The CPU count comes
 * from CMOS 0x5F (CPUs - 1), which QEMU and SwiftVMM both fill in. */
#include "runtime.h"

#define LAPIC 0xFEE00000UL
#define MAXCPU 8
#define SMP_TRAMP 0x8000UL

#define V_WAKE 0x30
#define V_FIXED 0x40     /* fixed, physical destination, one AP at a time */
#define V_LOWEST 0x41    /* lowest priority, logical destination: exactly one CPU */
#define V_SELF 0x42      /* shorthand self */
#define V_ALL 0x43       /* shorthand all including self */
#define V_OTHERS 0x44    /* shorthand all excluding self */
#define V_LOGICAL 0x45   /* fixed, logical destination: the odd CPUs */
#define V_BROADCAST 0x46 /* fixed, physical destination 0xFF */
#define V_SHOOT 0x50
#define V_SPURIOUS 0xFF
#define NVEC 7

#define LOCK_ROUNDS 100000
#define TICKET_ROUNDS 20000
#define WAIT_LIMIT 200000000UL

/* The page the shootdown remaps: a 2 MiB page at 3 GiB, first on RAM at A, then at B. */
#define SHOOT_VA 0xC0000000UL
#define SHOOT_A 0x2000000UL
#define SHOOT_B 0x2200000UL

extern char smp_tramp_start[], smp_tramp_end[];
extern char tramp_gdtr[], tramp_cr3[], tramp_cr4[], tramp_efer[], tramp_stack[], tramp_entry[];
extern char rt_gdt[];

static inline uint32_t lapic_read(unsigned off) { return mmio_read32(LAPIC + off); }
static inline void lapic_write(unsigned off, uint32_t v) { mmio_write32(LAPIC + off, v); }
static inline unsigned cpu_id(void) { return lapic_read(0x20) >> 24; }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }

static unsigned ncpu;
static volatile uint32_t started[MAXCPU];
static volatile uint32_t hits[MAXCPU][NVEC];
static volatile uint32_t nmis[MAXCPU];
static volatile uint32_t phase;
static volatile uint32_t done;
static volatile uint64_t locked_count;
static volatile uint64_t cas_count;
static volatile uint64_t plain_count; /* only under the ticket lock */
static volatile uint32_t ticket_next, ticket_owner, holder, violations;
static volatile uint64_t seen[MAXCPU];
static volatile uint32_t shoot_acks;
static uint8_t ap_stacks[MAXCPU][16384] __attribute__((aligned(16)));

struct gate {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, zero;
} __attribute__((packed));
static struct gate idt[256] __attribute__((aligned(16)));
static struct {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed)) idtr;

struct iframe;
#define COUNTING_ISR(v)                                                   \
    __attribute__((interrupt)) static void isr_##v(struct iframe *f) {    \
        (void)f;                                                          \
        hits[cpu_id()][v - V_FIXED]++;                                    \
        lapic_write(0xB0, 0);                                             \
    }
COUNTING_ISR(0x40)
COUNTING_ISR(0x41)
COUNTING_ISR(0x42)
COUNTING_ISR(0x43)
COUNTING_ISR(0x44)
COUNTING_ISR(0x45)
COUNTING_ISR(0x46)

__attribute__((interrupt)) static void isr_wake(struct iframe *f) {
    (void)f;
    lapic_write(0xB0, 0);
}

__attribute__((interrupt)) static void isr_nmi(struct iframe *f) {
    (void)f;
    nmis[cpu_id()]++;
}

__attribute__((interrupt)) static void isr_shoot(struct iframe *f) {
    (void)f;
    invlpg((void *)SHOOT_VA);
    seen[cpu_id()] = *(volatile uint64_t *)SHOOT_VA;
    __atomic_fetch_add(&shoot_acks, 1, __ATOMIC_SEQ_CST);
    lapic_write(0xB0, 0);
}

__attribute__((interrupt)) static void isr_spurious(struct iframe *f) { (void)f; }

static void set_gate(int v, void *fn) {
    uint64_t a = (uint64_t)fn;
    idt[v] = (struct gate){(uint16_t)a, 0x08, 0, 0x8E, (uint16_t)(a >> 16), (uint32_t)(a >> 32), 0};
}

static void load_idt(void) { __asm__ volatile("lidt %0" ::"m"(idtr)); }

/* Flat logical model with one LDR bit per CPU, TPR 0, software enabled. */
static void apic_init(void) {
    unsigned id = cpu_id();
    lapic_write(0xE0, 0xFFFFFFFF);
    lapic_write(0xD0, (1u << id) << 24);
    lapic_write(0x80, 0);
    lapic_write(0xF0, 0x100 | V_SPURIOUS);
}

static void send_ipi(uint8_t dest, uint32_t low) {
    lapic_write(0x310, (uint32_t)dest << 24);
    lapic_write(0x300, low);
    while (lapic_read(0x300) & (1 << 12)) pause();
}

static bool wait_until(volatile uint32_t *p, uint32_t v) {
    for (uint64_t i = 0; i < WAIT_LIMIT; i++) {
        if (*p >= v) return true;
        pause();
    }
    return false;
}

static void ticket_lock(void) {
    uint32_t t = __atomic_fetch_add(&ticket_next, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&ticket_owner, __ATOMIC_ACQUIRE) != t) pause();
}

static void ticket_unlock(void) {
    __atomic_store_n(&ticket_owner, ticket_owner + 1, __ATOMIC_RELEASE);
}

enum { PHASE_LOCKED = 1, PHASE_TICKET, PHASE_TLB_READ };

/* What every CPU does in a phase. */
static void work(uint32_t p, unsigned id) {
    switch (p) {
    case PHASE_LOCKED:
        for (int i = 0; i < LOCK_ROUNDS; i++) {
            __asm__ volatile("lock incq %0" : "+m"(locked_count)::"memory");
            uint64_t old = cas_count;
            while (!__atomic_compare_exchange_n(&cas_count, &old, old + 1, false, __ATOMIC_SEQ_CST,
                                                __ATOMIC_SEQ_CST)) {
            }
        }
        break;
    case PHASE_TICKET:
        for (int i = 0; i < TICKET_ROUNDS; i++) {
            ticket_lock();
            if (holder != 0) violations++;
            holder = id + 1;
            uint64_t v = plain_count;
            for (int k = 0; k < 8; k++) barrier(); /* widen the window */
            plain_count = v + 1;
            if (holder != id + 1) violations++;
            holder = 0;
            ticket_unlock();
        }
        break;
    case PHASE_TLB_READ:
        invlpg((void *)SHOOT_VA);
        seen[id] = *(volatile uint64_t *)SHOOT_VA;
        break;
    }
}

static void ap_main(void) {
    unsigned id = cpu_id();
    load_idt();
    apic_init();
    started[id] = 1;
    uint32_t last = 0;
    for (;;) {
        cli();
        /* STI's interrupt shadow keeps a wake-up IPI from slipping in before HLT. */
        while (phase == last) __asm__ volatile("sti; hlt; cli" ::: "memory");
        last = phase;
        sti();
        work(last, id);
        __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
    }
}

static int failures;

static void fail(const char *what) {
    printf("FAIL %s\n", what);
    failures++;
}

/* Wakes the APs (halted) with an IPI, works itself, waits for all of them. */
static void run_phase(uint32_t p) {
    done = 0;
    __atomic_store_n(&phase, p, __ATOMIC_SEQ_CST);
    send_ipi(0, 0xC0000 | V_WAKE);
    work(p, 0);
    if (!wait_until(&done, ncpu - 1)) fail("phase did not finish on every AP");
}

static uint64_t *shoot_pde(void) {
    uint64_t *pml4 = (uint64_t *)(read_cr3() & ~0xFFFUL);
    uint64_t *pdpt = (uint64_t *)(pml4[(SHOOT_VA >> 39) & 511] & ~0xFFFUL);
    uint64_t *pd = (uint64_t *)(pdpt[(SHOOT_VA >> 30) & 511] & ~0xFFFUL);
    return &pd[(SHOOT_VA >> 21) & 511];
}

/* Sends `low` (to `dest`) and waits until `total` deliveries of vector v arrived. */
static void ipi_case(const char *name, uint32_t v, uint8_t dest, uint32_t low, uint32_t total) {
    send_ipi(dest, low);
    for (uint64_t i = 0; i < WAIT_LIMIT; i++) {
        uint32_t n = 0;
        for (unsigned c = 0; c < ncpu; c++) n += hits[c][v - V_FIXED];
        if (n >= total) break;
        pause();
    }
    printf("ipi %s:", name);
    if (v == V_LOWEST) {
        /* Which CPU wins the arbitration is the platform's choice: print the total. */
        uint32_t n = 0;
        for (unsigned c = 0; c < ncpu; c++) n += hits[c][v - V_FIXED];
        printf(" %u in total", n);
    } else {
        for (unsigned c = 0; c < ncpu; c++) printf(" %u", hits[c][v - V_FIXED]);
    }
    printf("\n");
}

int guest_main(uint32_t magic, uint32_t mbi) {
    (void)magic, (void)mbi;
    outb(0x70, 0x5F);
    ncpu = inb(0x71) + 1u;
    if (ncpu > MAXCPU) ncpu = MAXCPU;
    printf("smp: %u cpus, bsp apic id %u\n", ncpu, cpu_id());

    for (int v = V_FIXED; v < V_FIXED + NVEC; v++) {
        static void (*const isrs[NVEC])(struct iframe *) = {isr_0x40, isr_0x41, isr_0x42, isr_0x43,
                                                            isr_0x44, isr_0x45, isr_0x46};
        set_gate(v, (void *)isrs[v - V_FIXED]);
    }
    set_gate(2, (void *)isr_nmi);
    set_gate(V_WAKE, (void *)isr_wake);
    set_gate(V_SHOOT, (void *)isr_shoot);
    set_gate(V_SPURIOUS, (void *)isr_spurious);
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (uint64_t)idt;
    load_idt();
    apic_init();
    /* The firmware may have left the PIT running through the 8259s (QEMU's SeaBIOS does). */
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    sti();

    /* The AP trampoline below 1 MiB, with the BSP's paging state. */
    memcpy((void *)SMP_TRAMP, smp_tramp_start, (size_t)(smp_tramp_end - smp_tramp_start));
#define TRAMP_FIELD(sym, type) (*(volatile type *)(SMP_TRAMP + (uintptr_t)((sym) - smp_tramp_start)))
    TRAMP_FIELD(tramp_gdtr + 2, uint32_t) = (uint32_t)(uintptr_t)rt_gdt;
    TRAMP_FIELD(tramp_cr3, uint64_t) = read_cr3();
    TRAMP_FIELD(tramp_cr4, uint64_t) = read_cr4();
    TRAMP_FIELD(tramp_efer, uint64_t) = rdmsr(0xC0000080) & ~0x400UL; /* LMA is set by the CPU */
    TRAMP_FIELD(tramp_entry, uint64_t) = (uint64_t)(uintptr_t)ap_main;
    unsigned up = 1;
    for (unsigned i = 1; i < ncpu; i++) {
        TRAMP_FIELD(tramp_stack, uint64_t) = (uint64_t)(uintptr_t)&ap_stacks[i][sizeof ap_stacks[i]];
        send_ipi(i, 0xC500);                     /* INIT, level assert */
        send_ipi(i, 0x8500);                     /* INIT, level de-assert */
        send_ipi(i, 0x0600 | (SMP_TRAMP >> 12)); /* start-up */
        if (!wait_until(&started[i], 1)) send_ipi(i, 0x0600 | (SMP_TRAMP >> 12));
        if (wait_until(&started[i], 1)) up++;
    }
    printf("smp: %u of %u cpus started\n", up, ncpu);
    if (up != ncpu) {
        fail("not every AP started");
        return 1;
    }

    run_phase(PHASE_LOCKED);
    uint64_t want = (uint64_t)ncpu * LOCK_ROUNDS;
    printf("lock inc: %lu, cmpxchg: %lu (expected %lu)\n", (unsigned long)locked_count,
           (unsigned long)cas_count, (unsigned long)want);
    if (locked_count != want || cas_count != want) fail("LOCK-prefixed counts");

    run_phase(PHASE_TICKET);
    want = (uint64_t)ncpu * TICKET_ROUNDS;
    printf("ticket lock: %lu (expected %lu), %u violations\n", (unsigned long)plain_count,
           (unsigned long)want, violations);
    if (plain_count != want || violations != 0) fail("ticket spinlock");

    for (unsigned i = 1; i < ncpu; i++) ipi_case("fixed", V_FIXED, (uint8_t)i, V_FIXED, i);
    ipi_case("lowest-priority", V_LOWEST, 0xFF, 0x0900 | V_LOWEST, 1);
    ipi_case("self", V_SELF, 0, 0x40000 | V_SELF, 1);
    ipi_case("all", V_ALL, 0, 0x80000 | V_ALL, ncpu);
    ipi_case("others", V_OTHERS, 0, 0xC0000 | V_OTHERS, ncpu - 1);
    ipi_case("logical", V_LOGICAL, 0xAA, 0x0800 | V_LOGICAL, ncpu / 2);
    ipi_case("broadcast", V_BROADCAST, 0xFF, V_BROADCAST, ncpu);
    uint32_t lowest = 0;
    for (unsigned c = 0; c < ncpu; c++) lowest += hits[c][V_LOWEST - V_FIXED];
    if (lowest != 1) fail("lowest priority must reach exactly one CPU");

    send_ipi(0, 0xC0400); /* NMI to the others */
    send_ipi(0, 0x40400); /* NMI to self */
    uint32_t n = 0;
    for (uint64_t i = 0; i < WAIT_LIMIT && n < ncpu; i++) {
        n = 0;
        for (unsigned c = 0; c < ncpu; c++) n += nmis[c];
        pause();
    }
    printf("nmi:");
    for (unsigned c = 0; c < ncpu; c++) printf(" %u", nmis[c]);
    printf("\n");
    if (n != ncpu) fail("NMI");

    /* TLB shootdown: everyone reads the page at A, CPU 0 remaps it to B and
     * tells the others, who INVLPG and must then see B. */
    *(volatile uint64_t *)SHOOT_A = 0xAAAA0000AAAA0000UL;
    *(volatile uint64_t *)SHOOT_B = 0xBBBB0000BBBB0000UL;
    uint64_t *pde = shoot_pde();
    *pde = SHOOT_A | 0x83;
    invlpg((void *)SHOOT_VA);
    run_phase(PHASE_TLB_READ);
    unsigned before = 0, after = 0;
    for (unsigned c = 0; c < ncpu; c++) before += seen[c] == 0xAAAA0000AAAA0000UL;
    *pde = SHOOT_B | 0x83;
    invlpg((void *)SHOOT_VA);
    seen[0] = *(volatile uint64_t *)SHOOT_VA;
    send_ipi(0, 0xC0000 | V_SHOOT);
    if (!wait_until(&shoot_acks, ncpu - 1)) fail("shootdown not acknowledged");
    for (unsigned c = 0; c < ncpu; c++) after += seen[c] == 0xBBBB0000BBBB0000UL;
    printf("tlb shootdown: %u cpus saw the old page, %u see the new one\n", before, after);
    if (before != ncpu || after != ncpu) fail("TLB shootdown");
    *pde = SHOOT_VA | 0x83; /* back to the identity map */
    invlpg((void *)SHOOT_VA);

    if (failures) return 1;
    printf("PASS smp\n");
    return 0;
}
