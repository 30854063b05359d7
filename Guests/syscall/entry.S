/* syscall guest: SYSCALL entry point (ring 0) and the ring-3 test code. */
    .section .text.syscall, "ax"
    .code64

/* struct sc_frame (see syscall.c), built on sc_kstack:
 *  0 nr  1 a0(rdi)  2 a1(rsi)  3 rcx  4 r11  5 kflags  6 kcs  7 kss
 *  8 user_rsp  9 rdx  10 r8  11 r9  12 r10  13 pad */
    .globl syscall_entry
syscall_entry:
    movq %rsp, sc_saved_user_rsp(%rip)
    leaq sc_kstack_top(%rip), %rsp
    pushq $0
    pushq %r10
    pushq %r9
    pushq %r8
    pushq %rdx
    pushq sc_saved_user_rsp(%rip)
    movl %ss, %r10d
    pushq %r10
    movl %cs, %r10d
    pushq %r10
    pushfq
    pushq %r11
    pushq %rcx
    pushq %rsi
    pushq %rdi
    pushq %rax
    movq %rsp, %rdi
    call sc_handler
    movq 8*1(%rsp), %rdi
    movq 8*2(%rsp), %rsi
    movq 8*3(%rsp), %rcx
    movq 8*4(%rsp), %r11
    movq 8*9(%rsp), %rdx
    movq 8*10(%rsp), %r8
    movq 8*11(%rsp), %r9
    movq 8*12(%rsp), %r10
    movq 8*8(%rsp), %rsp
    sysretq

/* One syscall from ring 3, recording what the user side can see. */
.macro DO_SYSCALL idx, nr
    leaq 9f(%rip), %rax
    movq %rax, sc_expect_rcx + 8*\idx(%rip)
    pushfq
    popq %rax
    movq %rax, sc_expect_r11 + 8*\idx(%rip)
    movq %rsp, sc_expect_rsp + 8*\idx(%rip)
    movl $\nr, %eax
    syscall
9:  movq %rax, sc_result + 8*\idx(%rip)
    pushfq
    popq %rax
    movq %rax, sc_user_flags + 8*\idx(%rip)
    movq %rcx, sc_user_rcx + 8*\idx(%rip)
    movq %r11, sc_user_r11 + 8*\idx(%rip)
    movq %rsp, sc_user_rsp + 8*\idx(%rip)
    movl %cs, %eax
    movq %rax, sc_user_cs + 8*\idx(%rip)
    movl %ss, %eax
    movq %rax, sc_user_ss + 8*\idx(%rip)
.endm

    .globl user_syscalls
user_syscalls:
    /* 1: plain call with one argument */
    movl $20, %edi
    DO_SYSCALL 0, 1

    /* 2: DF and AC set in the user RFLAGS: masked in the kernel by FMASK,
     *    restored from R11 by SYSRET */
    pushfq
    orq $0x40400, (%rsp)
    popfq
    movq $0x1234, %rdi
    movq $0x5678, %rsi
    DO_SYSCALL 1, 2
    cld
    pushfq
    andq $~0x40000, (%rsp)
    popfq

    /* 3: 64-bit return value; registers the kernel must preserve */
    movq $0x0101010101010101, %rbx
    movq $0x0202020202020202, %rbp
    movq $0x0303030303030303, %rdx
    movq $0x0808080808080808, %r8
    movq $0x0909090909090909, %r9
    movq $0x1010101010101010, %r10
    movq $0x1212121212121212, %r12
    movq $0x1515151515151515, %r15
    DO_SYSCALL 2, 3
    movq %rbx, sc_preserved + 8*0(%rip)
    movq %rbp, sc_preserved + 8*1(%rip)
    movq %rdx, sc_preserved + 8*2(%rip)
    movq %r8,  sc_preserved + 8*3(%rip)
    movq %r9,  sc_preserved + 8*4(%rip)
    movq %r10, sc_preserved + 8*5(%rip)
    movq %r12, sc_preserved + 8*6(%rip)
    movq %r15, sc_preserved + 8*7(%rip)

    /* leave ring 3 */
    movl $0x99, %edi
    movl $99, %eax
    syscall
    ud2

    .section .bss.syscall, "aw", @nobits
    .balign 16
sc_kstack:
    .skip 8192
sc_kstack_top:
sc_saved_user_rsp:
    .skip 8
