/* Real-mode start-up code for the APs. The BSP copies smp_tramp_start..end to
 * SMP_TRAMP (0x8000, SIPI vector 8) and fills in the data words below; an AP
 * starts at CS=0x0800, IP=0 in real mode, enters protected mode, turns on
 * long mode with the BSP's CR3/CR4/EFER and calls tramp_entry on tramp_stack.
 * Addresses are offsets from smp_tramp_start plus the copy's base. */
#define SMP_TRAMP 0x8000
#define T(x) ((x) - smp_tramp_start)

    .section .text.smp_tramp, "ax"
    .code16
    .globl smp_tramp_start
smp_tramp_start:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl T(tramp_gdtr)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(SMP_TRAMP + T(tramp32))

    .code32
tramp32:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl (SMP_TRAMP + T(tramp_cr4)), %eax
    movl %eax, %cr4
    movl (SMP_TRAMP + T(tramp_cr3)), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    movl (SMP_TRAMP + T(tramp_efer)), %eax
    xorl %edx, %edx
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmp $0x08, $(SMP_TRAMP + T(tramp64))

    .code64
tramp64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movq (SMP_TRAMP + T(tramp_stack)), %rsp
    movq (SMP_TRAMP + T(tramp_entry)), %rax
    xorl %ebp, %ebp
    call *%rax
1:  cli
    hlt
    jmp 1b

    .balign 8
    .globl tramp_gdtr, tramp_cr3, tramp_cr4, tramp_efer, tramp_stack, tramp_entry
tramp_gdtr:
    .word 31
    .long 0
    .balign 8
tramp_cr3:   .quad 0
tramp_cr4:   .quad 0
tramp_efer:  .quad 0
tramp_stack: .quad 0
tramp_entry: .quad 0
    .globl smp_tramp_end
smp_tramp_end:
