/* hello: prints a greeting and how it was booted, exits with code 0. */
#include "runtime.h"

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)mbi;
    puts("Hello from SwiftVMM guest!\n");
    if (magic == MULTIBOOT_BOOTLOADER_MAGIC)
        printf("multiboot: magic=0x%08x mem_upper=%uK cmdline=\"%s\"\n",
               magic, mb_mem_upper(), mb_cmdline());
    else
        printf("entry: long mode (elf64)\n");
    return 0;
}
