/* SwiftVMM test guests: 64 KiB boot stack shared by both entries. */
    .section .bss
    .balign 4096
    .globl rt_stack, rt_stack_top
rt_stack:
    .skip 65536
rt_stack_top:
