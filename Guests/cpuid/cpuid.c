/* cpuid: dumps the CPUID leaves the guest sees, one line per (leaf, subleaf). */
#include "runtime.h"

static void show(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    cpuid(leaf, sub, &r[0], &r[1], &r[2], &r[3]);
    printf("%08x.%02x: eax=%08x ebx=%08x ecx=%08x edx=%08x\n", leaf, sub, r[0], r[1], r[2], r[3]);
}

static void put_regs_str(const uint32_t *regs, int n)
{
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) {
            char c = (char)(regs[i] >> (8 * b));
            putc(c >= 0x20 && c < 0x7f ? c : '.');
        }
}

static void basic_leaf(uint32_t leaf)
{
    uint32_t r[4];
    switch (leaf) {
    case 4:         /* deterministic cache parameters: until cache type 0 */
        for (uint32_t s = 0; s < 8; s++) {
            show(leaf, s, r);
            if ((r[0] & 0x1f) == 0)
                break;
        }
        break;
    case 7: {       /* structured extended features: EAX of subleaf 0 = max subleaf */
        show(leaf, 0, r);
        uint32_t max = r[0] < 7 ? r[0] : 7;
        for (uint32_t s = 1; s <= max; s++)
            show(leaf, s, r);
        break;
    }
    case 0xb:
    case 0x1f:      /* topology: until level type 0 */
        for (uint32_t s = 0; s < 8; s++) {
            show(leaf, s, r);
            if (((r[2] >> 8) & 0xff) == 0)
                break;
        }
        break;
    case 0xd: {     /* XSAVE: subleaves 0, 1 and each supported component < 8 */
        show(leaf, 0, r);
        uint32_t mask = r[0];
        show(leaf, 1, r);
        for (uint32_t s = 2; s < 8; s++)
            if (mask & (1u << s))
                show(leaf, s, r);
        break;
    }
    default:
        show(leaf, 0, r);
        break;
    }
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint32_t r[4];

    show(0, 0, r);
    uint32_t max_basic = r[0];
    uint32_t vendor[3] = { r[1], r[3], r[2] };
    printf("vendor: max_basic=0x%08x \"", max_basic);
    put_regs_str(vendor, 3);
    puts("\"\n");

    uint32_t limit = max_basic < 0x40 ? max_basic : 0x40;
    bool hypervisor = false;
    for (uint32_t leaf = 1; leaf <= limit; leaf++) {
        basic_leaf(leaf);
        if (leaf == 1) {
            cpuid(1, 0, 0, 0, &r[2], 0);
            hypervisor = (r[2] >> 31) & 1;
        }
    }

    if (hypervisor) {
        show(0x40000000, 0, r);
        uint32_t hmax = r[0];
        uint32_t sig[3] = { r[1], r[2], r[3] };
        printf("hypervisor: max=0x%08x \"", hmax);
        put_regs_str(sig, 3);
        puts("\"\n");
        if (hmax > 0x40000010)
            hmax = 0x40000010;
        for (uint32_t leaf = 0x40000001; leaf <= hmax; leaf++)
            show(leaf, 0, r);
    } else {
        puts("hypervisor: none\n");
    }

    show(0x80000000, 0, r);
    uint32_t max_ext = r[0];
    if (max_ext >= 0x80000001 && max_ext <= 0x800000ff) {
        if (max_ext > 0x80000040)
            max_ext = 0x80000040;
        uint32_t brand[12] = { 0 };
        for (uint32_t leaf = 0x80000001; leaf <= max_ext; leaf++) {
            show(leaf, 0, r);
            if (leaf >= 0x80000002 && leaf <= 0x80000004)
                for (int i = 0; i < 4; i++)
                    brand[(leaf - 0x80000002) * 4 + i] = r[i];
        }
        if (max_ext >= 0x80000004) {
            const char *b = (const char *)brand;
            int start = 0, end = 48;
            while (start < 48 && b[start] == ' ')
                start++;
            for (end = start; end < 48 && b[end]; end++)
                ;
            printf("brand: \"%.*s\"\n", end - start, b + start);
        }
    }
    puts("cpuid: done\n");
    return 0;
}
