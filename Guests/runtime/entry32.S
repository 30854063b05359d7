/*
 * SwiftVMM test guests: Multiboot v1 header and 32-bit entry (NAME.elf).
 *
 * Entered by a Multiboot loader in 32-bit protected mode, paging off,
 * EAX = 0x2BADB002, EBX = physical address of the multiboot info.
 * Builds identity page tables for the low 4 GiB (2 MiB pages), enables
 * long mode, loads a 64-bit GDT and calls rt_main(magic, mbi), which calls
 * guest_main() and passes its return value to exit().
 *
 * If the guest defines the (32-bit code) function guest_pre32, it is called
 * in 32-bit protected mode with a valid stack before paging is enabled.
 */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003            /* page align | memory info */

#define MSR_EFER 0xC0000080

    .section .multiboot, "a"
    .balign 4
    .globl rt_multiboot_header
rt_multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text.entry32, "ax"
    .code32
    .globl _start32
    .type _start32, @function
_start32:
    cli
    cld
    movl %eax, rt_boot_magic
    movl %ebx, rt_boot_mbi

    /* zero .bss (page tables and stack live there) */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    movl $rt_stack_top, %esp
    xorl %ebp, %ebp

    /* optional guest hook, still in 32-bit protected mode */
    movl $guest_pre32, %eax
    testl %eax, %eax
    jz 1f
    call *%eax
    cli
    cld
1:
    /* PML4[0] -> PDPT */
    movl $rt_pdpt, %eax
    orl $0x3, %eax
    movl %eax, rt_pml4

    /* PDPT[0..3] -> PD0..PD3 */
    movl $rt_pd, %eax
    orl $0x3, %eax
    movl $rt_pdpt, %edi
    movl $4, %ecx
2:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x1000, %eax
    addl $8, %edi
    loop 2b

    /* PD entries: 2048 x 2 MiB, present | writable | PS */
    movl $rt_pd, %edi
    movl $0x83, %eax
    movl $2048, %ecx
3:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 3b

    movl $rt_pml4, %eax
    movl %eax, %cr3

    movl %cr4, %eax
    orl $0x20, %eax                     /* CR4.PAE */
    movl %eax, %cr4

    movl $MSR_EFER, %ecx
    rdmsr
    orl $0x100, %eax                    /* EFER.LME */
    wrmsr

    lgdt rt_gdt_desc

    movl %cr0, %eax
    orl $0x80000001, %eax               /* CR0.PG | CR0.PE */
    movl %eax, %cr0

    ljmp $0x08, $rt_long_entry

    .code64
rt_long_entry:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movq $rt_stack_top, %rsp
    xorl %ebp, %ebp
    movl rt_boot_magic(%rip), %edi
    movl rt_boot_mbi(%rip), %esi
    call rt_main
4:  cli
    hlt
    jmp 4b
    .size _start32, . - _start32

    .weak guest_pre32

    .section .data
    .balign 8
    .globl rt_boot_magic, rt_boot_mbi
rt_boot_magic:  .long 0
rt_boot_mbi:    .long 0

    .balign 16
    .globl rt_gdt
rt_gdt:
    .quad 0x0000000000000000            /* 0x00 null */
    .quad 0x00AF9A000000FFFF            /* 0x08 64-bit code, DPL0 */
    .quad 0x00CF92000000FFFF            /* 0x10 flat data, DPL0 */
    .quad 0x00CF9A000000FFFF            /* 0x18 32-bit code, DPL0 */
rt_gdt_end:

    .balign 8
    .globl rt_gdt_desc
rt_gdt_desc:
    .word rt_gdt_end - rt_gdt - 1
    .quad rt_gdt

    .section .bss
    .balign 4096
    .globl rt_pml4, rt_pdpt, rt_pd
rt_pml4:    .skip 4096
rt_pdpt:    .skip 4096
rt_pd:      .skip 4 * 4096
