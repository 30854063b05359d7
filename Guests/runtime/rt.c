/* SwiftVMM test guests: runtime core (startup, serial, exit, multiboot). */
#include "runtime.h"

struct boot_info boot_info;

/* ---------------------------------------------------------------- serial */

void serial_init(void)
{
    outb(SERIAL_PORT + 1, 0x00);    /* IER: no interrupts */
    outb(SERIAL_PORT + 3, 0x80);    /* LCR: DLAB */
    outb(SERIAL_PORT + 0, 0x01);    /* DLL: 115200 baud */
    outb(SERIAL_PORT + 1, 0x00);    /* DLM */
    outb(SERIAL_PORT + 3, 0x03);    /* LCR: 8N1 */
    outb(SERIAL_PORT + 2, 0x07);    /* FCR: enable + clear FIFOs */
    outb(SERIAL_PORT + 4, 0x03);    /* MCR: DTR | RTS */
}

void putc(char c)
{
    /* LSR bit 5: transmit holding register empty. Bounded wait so a broken
     * UART model cannot hang the guest forever. */
    for (uint32_t spin = 0; spin < 1000000u; spin++) {
        if (inb(SERIAL_PORT + 5) & 0x20)
            break;
    }
    outb(SERIAL_PORT, (uint8_t)c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

/* ------------------------------------------------------------------ exit */

NORETURN void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

NORETURN void exit(int code)
{
    outl(DEBUG_EXIT_PORT, (uint32_t)code);
    halt_forever();
}

void enable_sse(void)
{
    uint64_t cr0 = read_cr0();
    cr0 &= ~(1ull << 2);   /* EM */
    cr0 |= (1ull << 1);    /* MP */
    write_cr0(cr0);
    write_cr4(read_cr4() | (1ull << 9) | (1ull << 10));
}

/* ------------------------------------------------------------- multiboot */

struct mb_info_raw {
    uint32_t flags;
    uint32_t mem_lower;
    uint32_t mem_upper;
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count;
    uint32_t mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length;
    uint32_t mmap_addr;
};

static void parse_multiboot(uint32_t magic, uint32_t mbi)
{
    boot_info.magic = magic;
    boot_info.mbi = mbi;
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC || mbi == 0)
        return;
    const struct mb_info_raw *mb = (const struct mb_info_raw *)(uintptr_t)mbi;
    boot_info.flags = mb->flags;
    if (mb->flags & (1u << 0)) {
        boot_info.have_mem = true;
        boot_info.mem_lower = mb->mem_lower;
        boot_info.mem_upper = mb->mem_upper;
    }
    if ((mb->flags & (1u << 2)) && mb->cmdline) {
        const char *s = (const char *)(uintptr_t)mb->cmdline;
        size_t i = 0;
        while (s[i] && i + 1 < sizeof boot_info.cmdline) {
            boot_info.cmdline[i] = s[i];
            i++;
        }
        boot_info.cmdline[i] = 0;
        boot_info.have_cmdline = true;
    }
    if (mb->flags & (1u << 6)) {
        uintptr_t p = mb->mmap_addr, end = p + mb->mmap_length;
        while (p < end && boot_info.mmap_count < MB_MMAP_MAX) {
            uint32_t size = *(const uint32_t *)p;
            const uint8_t *e = (const uint8_t *)(p + 4);
            struct mb_mmap_entry *o = &boot_info.mmap[boot_info.mmap_count++];
            memcpy(&o->addr, e, 8);
            memcpy(&o->len, e + 8, 8);
            memcpy(&o->type, e + 16, 4);
            p += size + 4;
        }
    }
}

bool is_multiboot(void) { return boot_info.magic == MULTIBOOT_BOOTLOADER_MAGIC; }
uint32_t mb_mem_lower(void) { return boot_info.mem_lower; }
uint32_t mb_mem_upper(void) { return boot_info.mem_upper; }
const char *mb_cmdline(void) { return boot_info.cmdline; }
uint32_t mb_mmap_count(void) { return boot_info.mmap_count; }
const struct mb_mmap_entry *mb_mmap(uint32_t i) { return i < boot_info.mmap_count ? &boot_info.mmap[i] : NULL; }

/* ---------------------------------------------------------------- paging */

static void set_user_table(uint64_t *t, int level)
{
    for (int i = 0; i < 512; i++) {
        uint64_t e = t[i];
        if (!(e & 1))
            continue;
        t[i] = e | 4;
        /* level 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT */
        if (level > 1 && !(level < 4 && (e & 0x80)))
            set_user_table((uint64_t *)(uintptr_t)(e & 0x000FFFFFFFFFF000ull), level - 1);
    }
}

void paging_set_user_all(void)
{
    uint64_t *pml4 = (uint64_t *)(uintptr_t)(read_cr3() & 0x000FFFFFFFFFF000ull);
    /* Only the first PML4 entry covers the low 4 GiB (512 GiB). */
    if (pml4[0] & 1) {
        pml4[0] |= 4;
        set_user_table((uint64_t *)(uintptr_t)(pml4[0] & 0x000FFFFFFFFFF000ull), 3);
    }
    write_cr3(read_cr3());
}

/* ---------------------------------------------------------------- start */

NORETURN void rt_main(uint32_t magic, uint32_t mbi);

NORETURN void rt_main(uint32_t magic, uint32_t mbi)
{
    serial_init();
    parse_multiboot(magic, mbi);
    int rc = guest_main(magic, mbi);
    exit(rc);
}
