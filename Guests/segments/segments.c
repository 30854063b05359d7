/* segments: prints the outcome of each case that segments.S ran in 32- and
 * 16-bit protected mode before the runtime entered long mode. */
#include "runtime.h"

/* expect, feip and x*: the SDM's outcome of an SDMCASE (segments.S) */
struct sg_case {
    uint32_t code, name, show, expect, feip, xecx, xesi, xedi;
};
struct sg_result {
    uint32_t vec, err, eip, cs, eax, ecx, esi, edi, esp;
};
extern const struct sg_case sg_cases[], sg_cases_end[];
extern const struct sg_result sg_results[];
extern const uint32_t sg_count;

enum { S_EAX = 1, S_ECX = 2, S_ESI = 4, S_EDI = 8, S_ESP = 16, S_SDM = 0x100 };
#define VEC_DONE 0x40
#define VEC_SKIPPED 0xFFFFFFFEu
#define SEL_KCODE 0x08
#define SEL_UCODE 0x23

static const char *const names[32] = {
    "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "MP", "TS", "NP", "SS", "GP", "PF", "15",
    "MF", "AC", "MC", "XM", "VE", "CP", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
};

static bool has_error_code(uint32_t v)
{
    return v == 8 || v == 10 || v == 11 || v == 12 || v == 13 || v == 14 || v == 17;
}

static void print_outcome(uint32_t vec, uint32_t err, uint32_t cs, uint32_t eip, uint32_t code)
{
    if (vec == VEC_DONE) {
        printf("ok");
    } else if (vec >= 32) {
        printf("returned without INT 0x40");
    } else {
        printf("#%s", names[vec]);
        if (has_error_code(vec))
            printf("(%#x)", err);
        /* flat code: an offset into the case; limited code: CS:EIP */
        if (cs == SEL_KCODE || cs == SEL_UCODE)
            printf(" at +%u", eip - code);
        else
            printf(" at %#x:%#x", cs, eip);
    }
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)mbi;
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        puts("segments: not entered through multiboot: nothing ran\n");
        return 1;
    }
    uint32_t n = (uint32_t)(sg_cases_end - sg_cases);
    uint32_t sdm = 0, skipped = 0, wrong = 0;
    for (uint32_t i = 0; i < n; i++)
        sdm += (sg_cases[i].show & S_SDM) != 0;
    /* "sdm " lines are compared with the SDM's outcome, not with QEMU's */
    printf("segments: %u cases in 32- and 16-bit protected mode, %u of them checked against the SDM only\n",
           n, sdm);
    if (sg_count != n)
        printf("segments: only %u of %u cases ran\n", sg_count, n);
    for (uint32_t i = 0; i < sg_count && i < n; i++) {
        const struct sg_case *c = &sg_cases[i];
        const struct sg_result *r = &sg_results[i];
        if (r->vec == VEC_SKIPPED) {
            skipped++;
            continue;
        }
        if (c->show & S_SDM)
            printf("sdm ");
        printf("%s: ", (const char *)(uintptr_t)c->name);
        print_outcome(r->vec, r->err, r->cs, r->eip, c->code);
        if (c->show & S_EAX) printf(" eax=%#x", r->eax);
        if (c->show & S_ECX) printf(" ecx=%#x", r->ecx);
        if (c->show & S_ESI) printf(" esi=%#x", r->esi);
        if (c->show & S_EDI) printf(" edi=%#x", r->edi);
        if (c->show & S_ESP) printf(" esp=%#x", r->esp);
        if (c->show & S_SDM) {
            uint32_t vec = c->expect & 0xFF, err = c->expect >> 8;
            bool same = r->vec == vec && (vec == VEC_DONE ||
                        (r->eip == c->feip && (!has_error_code(vec) || r->err == err)));
            if (c->show & S_ECX) same = same && r->ecx == c->xecx;
            if (c->show & S_ESI) same = same && r->esi == c->xesi;
            if (c->show & S_EDI) same = same && r->edi == c->xedi;
            if (!same) {
                wrong++;
                printf(" FAIL: the SDM says ");
                print_outcome(vec, err, r->cs, c->feip, c->code);
                if (c->show & S_ECX) printf(" ecx=%#x", c->xecx);
                if (c->show & S_ESI) printf(" esi=%#x", c->xesi);
                if (c->show & S_EDI) printf(" edi=%#x", c->xedi);
            }
        }
        printf("\n");
    }
    if (skipped)
        printf("sdm: %u cases skipped (sdm=0)\n", skipped);
    if (wrong)
        printf("sdm: %u cases differ from the SDM\n", wrong);
    puts("segments: done\n");
    return wrong ? 1 : 0;
}
