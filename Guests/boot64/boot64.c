/* boot64: test-only Multiboot shim that boots a plain ELF64 guest image
 * (NAME64.elf) passed as the first multiboot module, in the state SwiftVMM
 * provides: long mode, paging identity-mapping the low 4 GiB (2 MiB pages),
 * flat 64-bit CS = 0x08, data = 0x10, interrupts off. Lets QEMU check the
 * _start64 path:
 *   qemu-system-x86_64 -kernel build/boot64.elf -initrd build/hello64.elf ...
 */
#include "runtime.h"

#define LOW_PML4   0x10000ull       /* PML4, PDPT, 4 PDs: 0x10000..0x15fff */
#define LOW_GDT    0x16000ull
#define LOW_SEGS   0x16800ull
#define LOW_TRAMP  0x17000ull
#define LOW_STACK  0x1f000ull
#define STAGING    0x4000000ull     /* module copied here (64 MiB) */

struct elf64_ehdr {
    uint8_t ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};

struct elf64_phdr {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

struct seg { uint64_t src, dst, filesz, zero; };

struct __attribute__((packed)) desc_ptr { uint16_t limit; uint64_t base; };

extern char boot64_tramp[], boot64_tramp_end[];

int guest_main(uint32_t magic, uint32_t mbi)
{
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        puts("FAIL boot64: must be booted through multiboot\n");
        return 1;
    }
    const uint32_t *mb = (const uint32_t *)(uintptr_t)mbi;
    if (!(mb[0] & (1u << 3)) || mb[5] == 0) {
        puts("FAIL boot64: no module (pass the ELF64 image with -initrd)\n");
        return 1;
    }
    const uint32_t *mod = (const uint32_t *)(uintptr_t)mb[6];
    uint64_t start = mod[0], end = mod[1];
    uint64_t size = end - start;
    if (size > 0x1000000) {
        puts("FAIL boot64: module too large\n");
        return 1;
    }
    memcpy((void *)STAGING, (const void *)start, size);

    const struct elf64_ehdr *eh = (const struct elf64_ehdr *)STAGING;
    if (memcmp(eh->ident, "\177ELF", 4) != 0 || eh->ident[4] != 2 || eh->machine != 62) {
        puts("FAIL boot64: module is not an x86-64 ELF64 image\n");
        return 1;
    }
    struct seg *segs = (struct seg *)LOW_SEGS;
    uint64_t n = 0;
    for (uint16_t i = 0; i < eh->phnum && n < 16; i++) {
        const struct elf64_phdr *ph = (const struct elf64_phdr *)(STAGING + eh->phoff + (uint64_t)i * eh->phentsize);
        if (ph->type != 1)  /* PT_LOAD */
            continue;
        segs[n].src = STAGING + ph->offset;
        segs[n].dst = ph->paddr;
        segs[n].filesz = ph->filesz;
        segs[n].zero = ph->memsz - ph->filesz;
        segs[n].dst += 0;   /* identity: paddr == vaddr */
        n++;
    }
    printf("boot64: module %lu bytes, %lu PT_LOAD segments, entry %#lx\n", size, n, eh->entry);

    /* identity page tables for the low 4 GiB in low memory */
    uint64_t *pml4 = (uint64_t *)LOW_PML4, *pdpt = pml4 + 512, *pd = pml4 + 1024;
    memset(pml4, 0, 6 * 4096);
    pml4[0] = (uint64_t)(uintptr_t)pdpt | 3;
    for (int i = 0; i < 4; i++)
        pdpt[i] = (uint64_t)(uintptr_t)(pd + 512 * i) | 3;
    for (int i = 0; i < 2048; i++)
        pd[i] = ((uint64_t)i << 21) | 0x83;

    uint64_t *gdt = (uint64_t *)LOW_GDT;
    gdt[0] = 0;
    gdt[1] = 0x00AF9A000000FFFFull;
    gdt[2] = 0x00CF92000000FFFFull;
    struct desc_ptr *gd = (struct desc_ptr *)(LOW_GDT + 0x40);
    gd->limit = 3 * 8 - 1;
    gd->base = LOW_GDT;

    memcpy((void *)LOW_TRAMP, boot64_tramp, (size_t)(boot64_tramp_end - boot64_tramp));
    write_cr3(LOW_PML4);
    void (*tramp)(struct seg *, uint64_t, uint64_t, void *, uint64_t) =
        (void (*)(struct seg *, uint64_t, uint64_t, void *, uint64_t))LOW_TRAMP;
    tramp(segs, n, eh->entry, gd, LOW_STACK);
    return 1;
}
