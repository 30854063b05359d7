/*
 * SwiftVMM test guests: freestanding runtime.
 *
 * Conventions: serial console = 16550 UART at 0x3F8 (polled), exit via
 * isa-debug-exit at port 0xF4 (outl v -> host status (v << 1) | 1),
 * identity-mapped low 4 GiB, image loaded at 1 MiB.
 */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define NORETURN __attribute__((noreturn))
#define UNUSED __attribute__((unused))
#define ALIGNED(n) __attribute__((aligned(n)))

#define SERIAL_PORT 0x3F8
#define DEBUG_EXIT_PORT 0xF4
#define MMIO_TEST_ADDR 0xD0000000u
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

/* Physical memory the runtime never touches, for big guest buffers. */
#define HEAP_BASE 0x1000000ul   /* 16 MiB */

/* ---- provided by the guest ---- */
int guest_main(uint32_t magic, uint32_t mbi);

/* ---- port I/O ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* ---- MMIO ---- */
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }

/* ---- CPU ---- */
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    uint32_t ra, rb, rc, rd;
    __asm__ volatile("cpuid" : "=a"(ra), "=b"(rb), "=c"(rc), "=d"(rd) : "a"(leaf), "c"(subleaf));
    if (a) *a = ra;
    if (b) *b = rb;
    if (c) *c = rc;
    if (d) *d = rd;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

#define DEFINE_CR(n) \
    static inline uint64_t read_cr##n(void) { uint64_t v; __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v)); return v; } \
    static inline void write_cr##n(uint64_t v) { __asm__ volatile("mov %0, %%cr" #n :: "r"(v) : "memory"); }
DEFINE_CR(0)
DEFINE_CR(2)
DEFINE_CR(3)
DEFINE_CR(4)
#undef DEFINE_CR

static inline uint64_t read_rflags(void) { uint64_t f; __asm__ volatile("pushfq; popq %0" : "=r"(f)); return f; }
static inline void invlpg(const volatile void *p) { __asm__ volatile("invlpg (%0)" :: "r"(p) : "memory"); }
static inline void cli(void) { __asm__ volatile("cli"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

#define MSR_EFER   0xC0000080u
#define MSR_STAR   0xC0000081u
#define MSR_LSTAR  0xC0000082u
#define MSR_CSTAR  0xC0000083u
#define MSR_FMASK  0xC0000084u
#define EFER_SCE   (1ull << 0)
#define EFER_LME   (1ull << 8)
#define EFER_LMA   (1ull << 10)
#define EFER_NXE   (1ull << 11)

#define CR0_PE (1ull << 0)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)

/* Enables SSE (CR0.EM=0, CR0.MP=1, CR4.OSFXSR|OSXMMEXCPT). Not done by default. */
void enable_sse(void);

/* ---- serial and formatted output ---- */
void serial_init(void);
void putc(char c);
void puts(const char *s);      /* no newline appended */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);

/* ---- exit ---- */
NORETURN void exit(int code);
NORETURN void halt_forever(void);

/* ---- string ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- multiboot ---- */
struct mb_mmap_entry {
    uint64_t addr;
    uint64_t len;
    uint32_t type;      /* 1 = available RAM */
};

#define MB_MMAP_MAX 32

struct boot_info {
    uint32_t magic;             /* 0x2BADB002 for multiboot, 0 for ELF64 entry */
    uint32_t mbi;               /* physical address of multiboot info or 0 */
    uint32_t flags;             /* multiboot info flags */
    bool have_mem;
    uint32_t mem_lower;         /* KiB */
    uint32_t mem_upper;         /* KiB */
    bool have_cmdline;
    char cmdline[256];          /* copied, NUL terminated ("" if none) */
    uint32_t mmap_count;
    struct mb_mmap_entry mmap[MB_MMAP_MAX];
};

extern struct boot_info boot_info;

bool is_multiboot(void);
uint32_t mb_mem_lower(void);
uint32_t mb_mem_upper(void);
const char *mb_cmdline(void);
uint32_t mb_mmap_count(void);
const struct mb_mmap_entry *mb_mmap(uint32_t i);

/* Command line tokens ("key=value" separated by spaces). */
bool cmdline_get(const char *key, char *out, size_t outlen);
uint64_t cmdline_uint(const char *key, uint64_t dflt);   /* decimal or 0x hex, k/m/g suffixes */

/* Benchmark work size: base * scale / div from the command line tokens
 * scale=N (default 1) and div=N (default 1); at least 1. */
static inline uint64_t bench_work(uint64_t base)
{
    uint64_t scale = cmdline_uint("scale", 1), div = cmdline_uint("div", 1);
    uint64_t v = base * scale / (div ? div : 1);
    return v ? v : 1;
}

/* ---- paging helpers (work on whatever CR3 points to, identity mapped) ---- */
/* Set the U/S bit on every present entry reachable for the low 4 GiB and flush the TLB. */
void paging_set_user_all(void);

#endif
