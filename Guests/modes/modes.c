/* modes: real mode / 16-bit / 32-bit protected mode / long mode /
 * compatibility mode transitions (see modes.S). */
#include "runtime.h"

extern volatile uint32_t modes_pre32_done, modes_pm32_cr0, modes_pm32b_cr0, modes_rm_cr0;
extern volatile uint32_t modes_rm_sum, modes_rm_mul_lo, modes_rm_mul_hi, modes_rm_alias, modes_rm_wrap;
extern volatile uint32_t modes_compat_dec, modes_compat_push, modes_compat_cs, modes_compat_efer;
void modes_load_gdt64(void);
void run_compat(void);

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL "); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)mbi;
    if (magic == MULTIBOOT_BOOTLOADER_MAGIC) {
        CHECK(modes_pre32_done == 1, "32-bit hook did not run");
        CHECK((modes_pm32_cr0 & 1) && !(modes_pm32_cr0 >> 31), "CR0 in 32-bit protected mode: %x", modes_pm32_cr0);
        CHECK(!(modes_rm_cr0 & 1), "CR0.PE set in real mode: %x", modes_rm_cr0);
        CHECK(modes_pm32b_cr0 & 1, "CR0.PE clear after returning: %x", modes_pm32b_cr0);
        CHECK(modes_rm_sum == 0x13ba, "real mode sum %x", modes_rm_sum);
        CHECK(modes_rm_mul_hi == 0x0001 && modes_rm_mul_lo == 0x2340, "real mode mul %x:%x",
              modes_rm_mul_hi, modes_rm_mul_lo);
        CHECK(modes_rm_wrap == 0x0101, "real mode 16-bit wrap %x", modes_rm_wrap);
        CHECK(modes_rm_alias == 0xbeef, "real mode segment alias %x", modes_rm_alias);
    } else {
        puts("modes: not entered through multiboot: real mode part skipped\n");
    }

    uint64_t efer = rdmsr(MSR_EFER);
    bool lma = efer & EFER_LMA;
    printf("modes: long mode (EFER.LMA=%d, CR0.PG=%d, CR4.PAE=%d)\n", lma ? 1 : 0,
           (int)((read_cr0() >> 31) & 1), (int)((read_cr4() >> 5) & 1));
    CHECK(lma, "EFER.LMA not set in long mode");

    modes_load_gdt64();
    run_compat();
    printf("modes: back in 64-bit mode: 0x48 executed as DEC EAX -> %u, push size %u, cs=%#x, EFER.LMA=%d\n",
           modes_compat_dec, modes_compat_push, modes_compat_cs, (int)((modes_compat_efer >> 10) & 1));
    CHECK(modes_compat_dec == 4, "0x48 in compatibility mode gave %u", modes_compat_dec);
    CHECK(modes_compat_push == 4, "push size in compatibility mode %u", modes_compat_push);
    CHECK(modes_compat_cs == 0x18, "cs in compatibility mode %#x", modes_compat_cs);
    CHECK((modes_compat_efer >> 10) & 1, "EFER.LMA clear in compatibility mode");

    /* 64-bit mode again: 0x48 is a REX.W prefix now */
    uint64_t r;
    __asm__ volatile("mov $5, %%eax\n\t .byte 0x48\n\t nop\n\t mov %%rax, %0" : "=r"(r) :: "rax");
    CHECK(r == 5, "0x48 0x90 in 64-bit mode changed rax to %lu", r);

    if (failures) {
        printf("FAIL modes: %d check(s) failed\n", failures);
        return 1;
    }
    puts("PASS modes\n");
    return 0;
}
