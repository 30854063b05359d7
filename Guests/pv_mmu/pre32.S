/* pv_mmu: the SwiftVMM PV handshake in 32-bit protected mode, before the
 * runtime's multiboot entry enables paging (docs/HYPERCALLS.md §1: a PV guest
 * calls HC_PV_HELLO before it enables paging or loads CR3).
 * Scans CPUID 0x40000000 + 0x100*k for "SwiftVMM\0\0\0\0"; if found and
 * base+1 EAX bit 0 (PV MMU) is set, calls HC_PV_HELLO(1) with VMCALL and
 * stores EAX in pv_pre32_hello and 1 in pv_pre32_done. */
    .section .text.pv32, "ax"
    .code32
    .globl guest_pre32
guest_pre32:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl $0x40000000, %edi
1:  movl %edi, %eax
    xorl %ecx, %ecx
    cpuid
    cmpl $0x66697753, %ebx          /* "Swif" */
    jne 2f
    cmpl $0x4D4D5674, %ecx          /* "tVMM" */
    jne 2f
    testl %edx, %edx
    jnz 2f
    leal 1(%edi), %ecx
    cmpl %ecx, %eax                 /* max leaf >= base + 1 */
    jb 2f
    movl %ecx, %eax
    xorl %ecx, %ecx
    cpuid
    testl $1, %eax                  /* PV MMU offered */
    jz 9f
    movl $0x53560001, %eax          /* HC_PV_HELLO */
    movl $1, %ebx                   /* ABI version 1 */
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    vmcall
    movl %eax, pv_pre32_hello
    movl $1, pv_pre32_done
    jmp 9f
2:  addl $0x100, %edi
    cmpl $0x40010000, %edi
    jb 1b
9:  popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret
