/* Host user-space stand-in for the guest runtime, so the bench_* kernels run
 * natively with the same compiled code: no libc, raw Linux syscalls.
 * Provides what the kernels and Guests/runtime/{printf,string}.c call. */
#include "sys.h"

struct boot_info boot_info;

static long sys3(long nr, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}

/* Output is buffered so the kernels' per-character putc does not become a syscall each. */
static char outbuf[4096];
static size_t outlen;

static void flush(void)
{
    size_t off = 0;
    while (off < outlen) {
        long n = sys3(1 /* write */, 1, (long)(outbuf + off), (long)(outlen - off));
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    outlen = 0;
}

void putc(char c)
{
    if (outlen == sizeof outbuf)
        flush();
    outbuf[outlen++] = c;
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

NORETURN void exit(int code)
{
    flush();
    for (;;)
        sys3(231 /* exit_group */, code, 0, 0);
}

NORETURN void halt_forever(void) { exit(1); }

bool is_multiboot(void) { return false; }

/* No page tables to walk in user space: report "not found" (bench_chase only prints the level). */
uint64_t *paging_leaf(uint64_t va, int *level)
{
    (void)va;
    *level = 0;
    return NULL;
}


/* The heap the kernels address directly (HEAP_BASE): 128 MiB, fixed, reserved lazily. */
#define HEAP_SIZE (128ul << 20)

void host_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    size_t n = 0;
    for (long i = 1; i < argc; i++) {
        for (const char *s = argv[i]; *s && n + 2 < sizeof boot_info.cmdline; s++)
            boot_info.cmdline[n++] = *s;
        if (n + 2 < sizeof boot_info.cmdline)
            boot_info.cmdline[n++] = ' ';
    }
    boot_info.cmdline[n] = 0;
    boot_info.have_cmdline = true;
    long p = sys6(9 /* mmap */, HEAP_BASE, HEAP_SIZE, 3 /* RW */,
                  0x22 | 0x100000 | 0x4000 /* PRIVATE|ANON|FIXED_NOREPLACE|NORESERVE */, -1, 0);
    if (p != (long)HEAP_BASE) {
        puts("native bench: cannot map the heap at HEAP_BASE\n");
        exit(2);
    }
    /* The guests run on 2 MiB pages and QEMU backs guest RAM with transparent huge pages:
     * so must the native heap, or bench_chase measures the host's 4 KiB TLB misses. A host
     * without THP refuses the advice; the run goes on with small pages. */
    sys6(28 /* madvise */, HEAP_BASE, HEAP_SIZE, 14 /* MADV_HUGEPAGE */, 0, 0, 0);
    exit(guest_main(0, 0));
}

__asm__(".globl _start\n_start:\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call host_main\n  ud2\n");
