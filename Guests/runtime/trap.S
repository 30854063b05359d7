/* SwiftVMM test guests: IDT stubs, trap entry/exit, ring-3 entry/exit. */
    .section .text.sys, "ax"
    .code64

/* 256 stubs, 16 bytes apart: push a dummy error code when the CPU does not,
 * push the vector number, jump to the common entry. */
    .balign 16
    .globl sys_trap_stubs
sys_trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp sys_trap_common
    .set vec, vec + 1
    .endr

sys_trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    movq %rsp, %rbx
    andq $-16, %rsp
    call trap_dispatch
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

/* void sys_load(void *gdt_desc, void *idt_desc, uint16_t tss_sel) */
    .globl sys_load
sys_load:
    lgdt (%rdi)
    lidt (%rsi)
    pushq $0x08
    leaq 1f(%rip), %rax
    pushq %rax
    lretq
1:  movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    ltr %dx
    ret

/* uint64_t run_user(void (*fn)(void), void *stack_top) */
    .globl run_user
run_user:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, sys_user_saved_rsp(%rip)
    pushq $0x2B                 /* SS = user data | 3 */
    leaq -8(%rsi), %rax         /* as if fn had been called */
    pushq %rax                  /* RSP */
    pushq $0x2                  /* RFLAGS: IF=0, IOPL=0 */
    pushq $0x33                 /* CS = user code64 | 3 */
    pushq %rdi                  /* RIP */
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %edi, %edi
    xorl %ebp, %ebp
    iretq

/* noreturn void user_return(uint64_t value): CPL0, discard the ring-3 context */
    .globl user_return
user_return:
    movq sys_user_saved_rsp(%rip), %rsp
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movq %rdi, %rax
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

/* noreturn void user_exit(uint64_t value): CPL3 */
    .globl user_exit
user_exit:
    int $0x81
1:  jmp 1b

    .section .bss.sys, "aw", @nobits
    .balign 8
sys_user_saved_rsp:
    .skip 8
