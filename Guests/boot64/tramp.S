/* boot64: position-independent trampoline, copied to low memory and run
 * there (the target image overwrites the shim at 1 MiB).
 * void tramp(struct seg *segs (rdi), uint64_t n (rsi), uint64_t entry (rdx),
 *            void *gdt_desc (rcx), uint64_t stack (r8)) */
    .section .text.boot64_tramp, "ax"
    .code64
    .globl boot64_tramp, boot64_tramp_end
boot64_tramp:
    cli
    cld
    lgdt (%rcx)
    leaq 1f(%rip), %rax
    pushq $0x08
    pushq %rax
    lretq
1:  movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movq %r8, %rsp
    movq %rdx, %r8
    movq %rdi, %r9
    movq %rsi, %r10
2:  testq %r10, %r10
    jz 3f
    movq 0(%r9), %rsi           /* source */
    movq 8(%r9), %rdi           /* destination (p_paddr) */
    movq 16(%r9), %rcx          /* p_filesz */
    rep movsb
    movq 24(%r9), %rcx          /* p_memsz - p_filesz */
    xorl %eax, %eax
    rep stosb
    addq $32, %r9
    decq %r10
    jmp 2b
3:  xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %edi, %edi
    xorl %ebp, %ebp
    jmp *%r8
boot64_tramp_end:
