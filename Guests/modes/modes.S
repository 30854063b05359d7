/*
 * modes guest: CPU mode transitions.
 *
 * guest_pre32 (called by the runtime's multiboot entry in 32-bit protected
 * mode, paging off): loads its own GDT, prints, copies a small blob to
 * physical RM_BASE, enters 16-bit protected mode, clears CR0.PE (real mode),
 * does 16-bit arithmetic and segment aliasing and prints through the UART in
 * real mode, sets CR0.PE again and returns to 32-bit protected mode. The
 * runtime then enters long mode and calls guest_main, which calls
 * run_compat() to execute a 32-bit compatibility-mode code segment.
 */

#define RM_BASE   0x7000          /* blob is copied here (segment 0x0700) */
#define RM_SEG    (RM_BASE >> 4)
#define RM_STACK  0x6ff0          /* SS=0 */
#define ALIAS_SEG 0x0800          /* 0x0800:0x0010 == 0x0801:0x0000 */

#define SEL_CODE64 0x08
#define SEL_DATA32 0x10
#define SEL_CODE32 0x18
#define SEL_CODE16 0x20
#define SEL_DATA16 0x28

#define OFF(x) ((x) - rm_blob_start)

/* ------------------------------------------------------------ 32-bit code */
    .section .text.modes32, "ax"
    .code32

    .globl guest_pre32
guest_pre32:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl %esp, modes_saved_esp
    lgdt modes_gdt_desc
    ljmp $SEL_CODE32, $1f
1:  movl $SEL_DATA32, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl %cr0, %eax
    movl %eax, modes_pm32_cr0
    movl $msg_pm32, %esi
    call puts32

    /* copy the 16-bit blob below 1 MiB */
    movl $rm_blob_start, %esi
    movl $RM_BASE, %edi
    movl $(rm_blob_end - rm_blob_start), %ecx
    cld
    rep movsb

    ljmp $SEL_CODE16, $(RM_BASE + OFF(pm16_entry))

pm32_back:
    movl $SEL_DATA32, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl modes_saved_esp, %esp
    movl %cr0, %eax
    movl %eax, modes_pm32b_cr0
    /* collect the real-mode results */
    movzwl RM_BASE + OFF(rm_sum), %eax
    movl %eax, modes_rm_sum
    movzwl RM_BASE + OFF(rm_mul_lo), %eax
    movl %eax, modes_rm_mul_lo
    movzwl RM_BASE + OFF(rm_mul_hi), %eax
    movl %eax, modes_rm_mul_hi
    movzwl RM_BASE + OFF(rm_alias), %eax
    movl %eax, modes_rm_alias
    movzwl RM_BASE + OFF(rm_wrap), %eax
    movl %eax, modes_rm_wrap
    movl RM_BASE + OFF(rm_cr0), %eax
    movl %eax, modes_rm_cr0
    movl $1, modes_pre32_done
    movl $msg_pm32_back, %esi
    call puts32
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

/* puts32: ESI = NUL-terminated string */
    .globl puts32
puts32:
    pushl %eax
1:  lodsb
    testb %al, %al
    jz 2f
    call putc32
    jmp 1b
2:  popl %eax
    ret

/* putc32: AL = byte; polls LSR.THRE (bounded) */
putc32:
    pushl %ecx
    pushl %edx
    movb %al, %ah
    movw $0x3fd, %dx
    movl $100000, %ecx
1:  inb %dx, %al
    testb $0x20, %al
    jnz 2f
    loop 1b
2:  movw $0x3f8, %dx
    movb %ah, %al
    outb %al, %dx
    popl %edx
    popl %ecx
    ret

/* ---- compatibility mode: entered from run_compat with a far return ---- */
compat_entry:
    movl $5, %eax
    .byte 0x48                  /* DEC EAX here; a REX.W prefix in 64-bit mode */
    movl %eax, modes_compat_dec
    movl %esp, %ebx
    pushl $0
    movl %esp, %ecx
    popl %edx
    subl %ecx, %ebx
    movl %ebx, modes_compat_push
    movl %cs, %eax
    movl %eax, modes_compat_cs
    movl $0xC0000080, %ecx
    rdmsr
    movl %eax, modes_compat_efer
    movl $msg_compat, %esi
    call puts32
    ljmp $SEL_CODE64, $compat_back

/* ------------------------------------------------------------ 64-bit code */
    .code64
/* void modes_load_gdt64(void): our GDT, CS=0x08, data=0x10 (long mode) */
    .globl modes_load_gdt64
modes_load_gdt64:
    lgdt modes_gdt_desc(%rip)
    pushq $SEL_CODE64
    leaq 1f(%rip), %rax
    pushq %rax
    lretq
1:  movl $SEL_DATA32, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    ret

/* void run_compat(void) */
    .globl run_compat
run_compat:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, modes_saved_rsp(%rip)
    pushq $SEL_CODE32
    pushq $compat_entry
    lretq
compat_back:
    movl $SEL_DATA32, %eax
    movl %eax, %ss
    movq modes_saved_rsp(%rip), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

/* ------------------------------------------- 16-bit blob (copied to RM_BASE) */
    .section .text.modes16, "ax"
    .code16
rm_blob_start:
pm16_entry:
    /* 16-bit protected mode, CS base 0: IP = RM_BASE + offset */
    movw $SEL_DATA16, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movw $RM_STACK, %sp
    movw $(RM_BASE + OFF(msg_pm16)), %si
    call puts16

    movl %cr0, %eax
    andl $~1, %eax
    movl %eax, %cr0
    ljmp $RM_SEG, $OFF(rm_entry)

rm_entry:
    /* real mode */
    movw $RM_SEG, %ax
    movw %ax, %ds
    movw %ax, %es
    xorw %ax, %ax
    movw %ax, %ss
    movw $RM_STACK, %sp
    movl %cr0, %eax
    movl %eax, OFF(rm_cr0)
    movw $OFF(msg_rm), %si
    call puts16

    /* sum 1..100 = 5050 = 0x13ba */
    xorw %ax, %ax
    movw $100, %cx
1:  addw %cx, %ax
    loop 1b
    movw %ax, OFF(rm_sum)

    /* 0x1234 * 0x10 = 0x00012340 in DX:AX */
    movw $0x1234, %ax
    movw $0x10, %bx
    mulw %bx
    movw %ax, OFF(rm_mul_lo)
    movw %dx, OFF(rm_mul_hi)

    /* 16-bit wrap: 0xffff + 2 = 0x0001 with CF=1 -> 0x0101 */
    movw $0xffff, %ax
    addw $2, %ax
    setc %ah
    movw %ax, OFF(rm_wrap)

    /* segment aliasing: write 0x0800:0x0010, read 0x0801:0x0000 */
    movw $ALIAS_SEG, %ax
    movw %ax, %es
    movw $0xbeef, %es:0x10
    movw $(ALIAS_SEG + 1), %ax
    movw %ax, %es
    movw %es:0, %ax
    movw %ax, OFF(rm_alias)
    movw $RM_SEG, %ax
    movw %ax, %es

    /* print the results from real mode */
    movw $OFF(msg_rm_sum), %si
    call puts16
    movw OFF(rm_sum), %ax
    call puthex16
    movw $OFF(msg_rm_mul), %si
    call puts16
    movw OFF(rm_mul_hi), %ax
    call puthex16
    movw OFF(rm_mul_lo), %ax
    call puthex16
    movw $OFF(msg_rm_wrap), %si
    call puts16
    movw OFF(rm_wrap), %ax
    call puthex16
    movw $OFF(msg_rm_alias), %si
    call puts16
    movw OFF(rm_alias), %ax
    call puthex16
    movb $'\n', %al
    call putc16

    /* back to 32-bit protected mode (GDTR still holds the modes GDT) */
    cli
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE32, $pm32_back

/* puts16: DS:SI = string */
puts16:
    pushw %ax
1:  lodsb
    testb %al, %al
    jz 2f
    call putc16
    jmp 1b
2:  popw %ax
    ret

/* putc16: AL = byte */
putc16:
    pushw %cx
    pushw %dx
    movb %al, %ah
    movw $0x3fd, %dx
    movw $0xffff, %cx
1:  inb %dx, %al
    testb $0x20, %al
    jnz 2f
    loop 1b
2:  movw $0x3f8, %dx
    movb %ah, %al
    outb %al, %dx
    popw %dx
    popw %cx
    ret

/* puthex16: AX as 4 lower-case hex digits */
puthex16:
    pushw %ax
    pushw %bx
    pushw %cx
    movw %ax, %bx
    movw $4, %cx
1:  rolw $4, %bx
    movb %bl, %al
    andb $0xf, %al
    cmpb $10, %al
    jb 2f
    addb $('a' - '0' - 10), %al
2:  addb $'0', %al
    call putc16
    loop 1b
    popw %cx
    popw %bx
    popw %ax
    ret

    .balign 4
rm_cr0:     .long 0
rm_sum:     .word 0
rm_mul_lo:  .word 0
rm_mul_hi:  .word 0
rm_wrap:    .word 0
rm_alias:   .word 0
msg_pm16:   .asciz "modes: 16-bit protected mode\n"
msg_rm:     .asciz "modes: real mode (CR0.PE=0), writing to the UART from 16-bit code\n"
msg_rm_sum: .asciz "modes: real mode results sum="
msg_rm_mul: .asciz " mul="
msg_rm_wrap: .asciz " wrap="
msg_rm_alias: .asciz " alias="
rm_blob_end:

/* ------------------------------------------------------------------ data */
    .section .rodata.modes, "a"
msg_pm32:      .asciz "modes: 32-bit protected mode (multiboot entry)\n"
msg_pm32_back: .asciz "modes: back in 32-bit protected mode\n"
msg_compat:    .asciz "modes: compatibility mode (32-bit code segment under long mode)\n"

    .section .data.modes, "aw"
    .balign 16
modes_gdt:
    .quad 0x0000000000000000        /* 0x00 */
    .quad 0x00AF9A000000FFFF        /* 0x08 code64 */
    .quad 0x00CF92000000FFFF        /* 0x10 data32 flat */
    .quad 0x00CF9A000000FFFF        /* 0x18 code32 flat */
    .quad 0x00009A000000FFFF        /* 0x20 code16, base 0, limit 0xffff */
    .quad 0x000092000000FFFF        /* 0x28 data16, base 0, limit 0xffff */
modes_gdt_end:
    .balign 8
modes_gdt_desc:
    .word modes_gdt_end - modes_gdt - 1
    .quad modes_gdt

    .balign 8
    .globl modes_pre32_done, modes_pm32_cr0, modes_pm32b_cr0, modes_rm_cr0
    .globl modes_rm_sum, modes_rm_mul_lo, modes_rm_mul_hi, modes_rm_alias, modes_rm_wrap
    .globl modes_compat_dec, modes_compat_push, modes_compat_cs, modes_compat_efer
modes_saved_esp:    .long 0
modes_saved_rsp:    .quad 0
modes_pre32_done:   .long 0
modes_pm32_cr0:     .long 0
modes_pm32b_cr0:    .long 0
modes_rm_cr0:       .long 0
modes_rm_sum:       .long 0
modes_rm_mul_lo:    .long 0
modes_rm_mul_hi:    .long 0
modes_rm_alias:     .long 0
modes_rm_wrap:      .long 0
modes_compat_dec:   .long 0
modes_compat_push:  .long 0
modes_compat_cs:    .long 0
modes_compat_efer:  .long 0
