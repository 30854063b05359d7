/*
 * irqs: external interrupts from the platform's devices, taken with STI; HLT.
 *  1. PIT channel 0 (periodic, ~1 kHz) through the 8259 PIC as vector 0x20.
 *  2. The 16550's transmitter-empty interrupt (IRQ 4) as vector 0x24.
 *  3. The local APIC timer (periodic, MMIO at 0xFEE00000) as vector 0x40.
 * The same output is expected on every engine and under QEMU. Each wait is
 * bounded by a count of HLT wake-ups so a missing interrupt fails, not hangs
 * (the host's --timeout still covers an interrupt that never comes at all).
 */
#include "runtime.h"
#include "sys.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1
#define LAPIC 0xFEE00000ull

static volatile uint64_t hits[256];

static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(LAPIC + reg) = v; }
static uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t *)(LAPIC + reg); }

static bool hook(struct trap_frame *f)
{
    if (f->vector < 0x20)
        return false;
    hits[f->vector]++;
    if (f->vector == 0x24)
        (void)inb(0x3FA);           /* IIR read acknowledges THR-empty */
    if (f->vector >= 0x20 && f->vector < 0x30)
        outb(PIC1_CMD, 0x20);       /* non-specific EOI */
    if (f->vector == 0x40) {
        lapic_write(0xB0, 0);       /* LAPIC EOI */
    }
    return true;
}

/* STI; HLT until hits[vec] reaches want or max_wakeups HLTs return. */
static uint64_t wait_for(int vec, uint64_t want, int max_wakeups)
{
    for (int i = 0; i < max_wakeups && hits[vec] < want; i++)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    return hits[vec];
}

static void pic_init(uint8_t mask1)
{
    outb(PIC1_CMD, 0x11); outb(PIC2_CMD, 0x11);      /* ICW1: edge, cascade, ICW4 */
    outb(PIC1_DATA, 0x20); outb(PIC2_DATA, 0x28);    /* ICW2: vector bases */
    outb(PIC1_DATA, 0x04); outb(PIC2_DATA, 0x02);    /* ICW3: slave on IRQ 2 */
    outb(PIC1_DATA, 0x01); outb(PIC2_DATA, 0x01);    /* ICW4: 8086 mode */
    outb(PIC1_DATA, mask1); outb(PIC2_DATA, 0xFF);
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("irqs: start\n");
    sys_init();
    trap_hook = hook;
    for (int v = 0x20; v <= 0x40; v++)
        idt_set_gate(v, 0, 0);

    /* 1. PIT: mode 2, divisor 1193 (~1 kHz), only IRQ 0 unmasked. */
    pic_init(0xFE);
    outb(0x43, 0x34);
    outb(0x40, 1193 & 0xFF);
    outb(0x40, 1193 >> 8);
    uint64_t n = wait_for(0x20, 10, 1000);
    outb(PIC1_DATA, 0xFF);
    CHECK(n >= 10, "PIT: %llu ticks of 10", (unsigned long long)n);
    printf("pit: %s\n", n >= 10 ? "10 ticks" : "missing");

    /* 2. UART: transmitter-empty interrupt on IRQ 4. */
    outb(PIC1_DATA, 0xEF);
    outb(0x3FC, 0x0B);          /* MCR: DTR, RTS, OUT2 (a PC gates IRQ 4 with OUT2) */
    outb(0x3F9, 0x02);          /* IER: THRE */
    n = wait_for(0x24, 1, 100);
    outb(0x3F9, 0x00);
    outb(PIC1_DATA, 0xFF);
    CHECK(n >= 1, "UART: no THRE interrupt");
    printf("uart: %s\n", n >= 1 ? "THRE interrupt" : "missing");

    /* 3. LAPIC timer: periodic, vector 0x40, divide by 16. */
    lapic_write(0xF0, 0x1FF);           /* software enable, spurious vector 0xFF */
    lapic_write(0x3E0, 0x3);            /* divide by 16 */
    lapic_write(0x320, 0x40 | 1u << 17);/* periodic */
    lapic_write(0x380, 100000);
    n = wait_for(0x40, 5, 1000);
    lapic_write(0x320, 1u << 16);       /* masked */
    CHECK(n >= 5, "LAPIC timer: %llu ticks of 5", (unsigned long long)n);
    CHECK((lapic_read(0x30) & 0xFF) >= 0x10, "LAPIC version 0x%x", lapic_read(0x30));
    printf("lapic timer: %s\n", n >= 5 ? "5 ticks" : "missing");

    return finish("irqs");
}
