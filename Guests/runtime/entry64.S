/*
 * SwiftVMM test guests: 64-bit entry for the plain ELF64 variant (NAME64.elf).
 *
 * Assumes the loader already enabled long mode with paging identity-mapping
 * the low 4 GiB, a flat 64-bit code segment and interrupts off. Uses
 * whatever GDT/segments are loaded; sets up its own stack and calls
 * rt_main(0, 0).
 */
    .section .text.entry64, "ax"
    .code64
    .globl _start64
    .type _start64, @function
_start64:
    cli
    cld
    /* zero .bss (the stack lives there, so do this before using it) */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    movq $rt_stack_top, %rsp
    xorl %ebp, %ebp
    xorl %edi, %edi
    xorl %esi, %esi
    call rt_main
1:  cli
    hlt
    jmp 1b
    .size _start64, . - _start64
