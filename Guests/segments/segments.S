/*
 * segments guest: segment limit and type checks in 32- and 16-bit protected
 * mode (SDM vol. 3, 5.3-5.4), compared line for line with QEMU TCG.
 *
 * guest_pre32 runs before the runtime enables paging: it loads its own GDT,
 * IDT and TSS, then runs every CASE below from flat 32-bit ring-0 code
 * (CS=0x08, data segments 0x10, registers other than ESP zero). A case does
 * one access and ends with INT 0x40 ("ok"), or faults. Both go through
 * sg_trap, which records the vector, error code, CS:EIP, EAX/ECX/ESI/EDI and
 * ESP, then restores the flat segments and the harness stack. guest_main
 * (64-bit C, segments.c) prints the table afterwards.
 *
 * Code run under the limited code segments (0x50/0x58: base 0x20000, limit
 * 0xFFF; 0x60: 16-bit, base 0x20000, limit 0xFFFF) is copied to BLOB_BASE,
 * and the top 16 bytes of the 16-bit segment (IP 0xFFF0..0xFFFF) to HI_BASE.
 * Data segments with limits have base 16 MiB (free RAM).
 * Cases that must make a PUSH fail run in ring 3, so the exception switches
 * to the TSS stack instead of pushing its frame through the same bad SS.
 */

#define BLOB_BASE  0x20000
#define HI_BASE    (BLOB_BASE + 0xFFF0)

#define SEL_KCODE  0x08
#define SEL_KDATA  0x10
#define SEL_TSS    0x18
#define SEL_UCODE  0x20
#define SEL_UDATA  0x28
#define SEL_DLIM   0x30   /* data, base 16M, limit 0xFFF */
#define SEL_DRO    0x38   /* read-only data, base 16M, limit 0xFFF */
#define SEL_DED32  0x40   /* expand-down, B=1, limit 0xFFF */
#define SEL_DED16  0x48   /* expand-down, B=0, limit 0xFFF */
#define SEL_CXO    0x50   /* execute-only code32, base 0x20000, limit 0xFFF */
#define SEL_CRD    0x58   /* readable code32, base 0x20000, limit 0xFFF */
#define SEL_C16    0x60   /* readable code16, base 0x20000, limit 0xFFFF */
#define SEL_DNP    0x68   /* data, not present */
#define SEL_USTK   0x70   /* DPL3 data, base 16M, limit 0xFFF */
#define SEL_USTKED 0x78   /* DPL3 expand-down, B=1, limit 0xFFF */
#define SEL_CMID   0x80   /* readable code32, base 0x20000, limit 0x7FF (mid-page) */
#define SEL_CNP    0x88   /* code32, not present */
#define SEL_CCONF  0x90   /* conforming readable code32, DPL 0 */
#define SEL_BEYOND 0x1F8  /* past the GDT limit */

#define VEC_DONE   0x40
#define SG_MAX     256    /* room in sg_results */

/* show bits (which registers segments.c prints) */
#define S_EAX 1
#define S_ECX 2
#define S_ESI 4
#define S_EDI 8
#define S_ESP 16
#define S_SDM 0x100  /* checked against the SDM, not QEMU */

#define BOFF(x) ((x) - sg_blob)
#define HOFF(x) ((x) - sg_hi + 0xFFF0)

/* CASE name, show: a table entry {code, name, show, 0, 0} and the case's label.
 * QEMU TCG is the oracle for these. */
.macro CASE name, show
    .section .rodata.sgcases, "a"
    .long sgc_\name, sgn_\name, \show, 0, 0, 0, 0, 0
    CASE_BODY \name
.endm

/* SDMCASE name, show, vec, err, feip: a case QEMU TCG does not check (it
 * ignores data and stack segment limits, types and null selectors, SDM 5.3-5.4).
 * The SDM's outcome is in the table: vector (VEC_DONE = no fault), error code,
 * the faulting EIP (label 9: before the instruction, or a blob offset) and the
 * ECX/ESI/EDI a fault leaves (checked where the case shows them).
 * sdm=0 on the command line skips them (qemu-test.sh; some crash QEMU). */
.macro SDMCASE name, show, vec, err, feip, xecx=0, xesi=0, xedi=0
    .section .rodata.sgcases, "a"
    .long sgc_\name, sgn_\name, (\show)|S_SDM, (\vec)|((\err)<<8), \feip
    .long \xecx, \xesi, \xedi
    CASE_BODY \name
.endm

.macro CASE_BODY name
    .section .rodata.sgnames, "a"
sgn_\name: .asciz "\name"
    .section .text.sgcases, "ax"
    .code32
    .balign 16
sgc_\name:
.endm

.macro DONE
    int $VEC_DONE
.endm

/* Enter ring 3 at the following code with SS=UDATA and a flat user stack. */
.macro TO_RING3
    pushl $(SEL_UDATA | 3)
    pushl $sg_ustack_top
    pushfl
    pushl $(SEL_UCODE | 3)
    pushl $1f
    iret
1:
.endm

    .section .rodata.sgcases, "a"
    .balign 4
    .globl sg_cases
sg_cases:

/* LAR/LSL/VERR/VERW: EAX = result (0xDEAD if unchanged), ECX = ZF. First in
 * the table, so the descriptors' accessed bits are those the harness set. */
.macro SELCHECK op, sel
    movl $0xDEAD, %eax
    movl $\sel, %ebx
    xorl %ecx, %ecx
    .ifc \op, verr
    verr %bx
    .else
    .ifc \op, verw
    verw %bx
    .else
    \op %ebx, %eax
    .endif
    .endif
    setz %cl
    DONE
.endm

CASE lar_dlim, S_EAX|S_ECX
    SELCHECK lar, SEL_DLIM
CASE lsl_dlim, S_EAX|S_ECX
    SELCHECK lsl, SEL_DLIM
CASE lar_kdata, S_EAX|S_ECX
    SELCHECK lar, SEL_KDATA
CASE lsl_kdata, S_EAX|S_ECX
    SELCHECK lsl, SEL_KDATA
CASE lar_tss, S_EAX|S_ECX
    SELCHECK lar, SEL_TSS
CASE lsl_tss, S_EAX|S_ECX
    SELCHECK lsl, SEL_TSS
CASE lar_cxo, S_EAX|S_ECX
    SELCHECK lar, SEL_CXO
CASE lsl_cxo, S_EAX|S_ECX
    SELCHECK lsl, SEL_CXO
CASE lar_dnp, S_EAX|S_ECX
    SELCHECK lar, SEL_DNP
CASE lsl_dnp, S_EAX|S_ECX
    SELCHECK lsl, SEL_DNP
CASE lar_ustked, S_EAX|S_ECX
    SELCHECK lar, SEL_USTKED
CASE lsl_ustked, S_EAX|S_ECX
    SELCHECK lsl, SEL_USTKED
CASE lar_kdata_rpl3, S_EAX|S_ECX
    SELCHECK lar, (SEL_KDATA|3)
CASE lsl_kdata_rpl3, S_EAX|S_ECX
    SELCHECK lsl, (SEL_KDATA|3)
CASE lar_beyond, S_EAX|S_ECX
    SELCHECK lar, SEL_BEYOND
CASE lsl_beyond, S_EAX|S_ECX
    SELCHECK lsl, SEL_BEYOND
CASE lar_null, S_EAX|S_ECX
    SELCHECK lar, 0
CASE lsl_null, S_EAX|S_ECX
    SELCHECK lsl, 0
CASE lar_c16, S_EAX|S_ECX
    SELCHECK lar, (SEL_C16)
CASE lsl_c16, S_EAX|S_ECX
    SELCHECK lsl, (SEL_C16)
CASE verr_dro, S_EAX|S_ECX
    SELCHECK verr, SEL_DRO
CASE verw_dro, S_EAX|S_ECX
    SELCHECK verw, SEL_DRO
CASE verr_cxo, S_EAX|S_ECX
    SELCHECK verr, SEL_CXO
CASE verw_cxo, S_EAX|S_ECX
    SELCHECK verw, SEL_CXO
CASE verr_crd, S_EAX|S_ECX
    SELCHECK verr, SEL_CRD
CASE verw_crd, S_EAX|S_ECX
    SELCHECK verw, SEL_CRD
CASE verr_dnp, S_EAX|S_ECX
    SELCHECK verr, SEL_DNP
CASE verw_dnp, S_EAX|S_ECX
    SELCHECK verw, SEL_DNP
CASE verr_tss, S_EAX|S_ECX
    SELCHECK verr, SEL_TSS
CASE verw_tss, S_EAX|S_ECX
    SELCHECK verw, SEL_TSS
CASE verr_ustk_rpl3, S_EAX|S_ECX
    SELCHECK verr, (SEL_USTK|3)
CASE verw_ustk_rpl3, S_EAX|S_ECX
    SELCHECK verw, (SEL_USTK|3)
CASE verr_kdata_rpl3, S_EAX|S_ECX
    SELCHECK verr, (SEL_KDATA|3)
CASE verw_kdata_rpl3, S_EAX|S_ECX
    SELCHECK verw, (SEL_KDATA|3)

/* ------------------------------------------------------------- data limits */
CASE ds_read_dword_edge, 0
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    movl 0xFFC, %eax
    DONE
SDMCASE ds_read_dword_past, 0, 13, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ds
9:  movl 0xFFD, %eax
    DONE
CASE ds_read_word_edge, 0
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    movw 0xFFE, %ax
    DONE
SDMCASE ds_read_word_past, 0, 13, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ds
9:  movw 0xFFF, %ax
    DONE
CASE ds_read_byte_edge, 0
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    movb 0xFFF, %al
    DONE
SDMCASE ds_read_byte_past, 0, 13, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ds
9:  movb 0x1000, %al
    DONE
SDMCASE ds_write_dword_past, 0, 13, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ds
9:  movl %eax, 0xFFD
    DONE
SDMCASE ds_rmw_past, 0, 13, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ds
9:  addl %eax, 0xFFE
    DONE
CASE ds_index_wraps_past, 0
    /* base+index wraps 32 bits: offset 0xFFFFFFFF + 0x10 = 0xF, in the limit */
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    movl $0xFFFFFFFF, %ebx
    movb 0x10(%ebx), %al
    DONE
CASE ro_read, 0
    movw $SEL_DRO, %ax
    movw %ax, %ds
    movl 0x100, %eax
    DONE
SDMCASE ro_write, 0, 13, 0, 9f
    movw $SEL_DRO, %ax
    movw %ax, %ds
9:  movl %eax, 0x100
    DONE
SDMCASE ro_write_fs, 0, 13, 0, 9f
    movw $SEL_DRO, %ax
    movw %ax, %fs
9:  movb %al, %fs:0
    DONE

/* ------------------------------------------------------------- expand-down */
SDMCASE expdown32_at_limit, 0, 13, 0, 9f
    movw $SEL_DED32, %ax
    movw %ax, %es
9:  movb %es:0xFFF, %al
    DONE
CASE expdown32_above_limit, 0
    movw $SEL_DED32, %ax
    movw %ax, %es
    movl %es:0x1000, %eax
    DONE
SDMCASE expdown32_straddle, 0, 13, 0, 9f
    movw $SEL_DED32, %ax
    movw %ax, %es
9:  movl %es:0xFFE, %eax
    DONE
CASE expdown32_top, 0
    movw $SEL_DED32, %ax
    movw %ax, %es
    movl %es:0xFFFFFFFC, %eax
    DONE
SDMCASE expdown32_wrap, 0, 13, 0, 9f
    movw $SEL_DED32, %ax
    movw %ax, %es
9:  movl %es:0xFFFFFFFE, %eax
    DONE
CASE expdown16_top, 0
    movw $SEL_DED16, %ax
    movw %ax, %es
    movl %es:0xFFFC, %eax
    DONE
SDMCASE expdown16_past_64k, 0, 13, 0, 9f
    movw $SEL_DED16, %ax
    movw %ax, %es
9:  movl %es:0xFFFE, %eax
    DONE
SDMCASE expdown16_beyond_64k, 0, 13, 0, 9f
    movw $SEL_DED16, %ax
    movw %ax, %es
9:  movb %es:0x10000, %al
    DONE
SDMCASE expdown16_at_limit, 0, 13, 0, 9f
    movw $SEL_DED16, %ax
    movw %ax, %es
9:  movb %es:0xFFF, %al
    DONE

/* ---------------------------------------------------------- code segments */
SDMCASE cs_read_exec_only, S_EAX, 13, 0, BOFF(sg_b_csread)
    ljmp $SEL_CXO, $BOFF(sg_b_csread)
CASE cs_read_readable, S_EAX
    ljmp $SEL_CRD, $BOFF(sg_b_csread)
CASE code_read_via_ds, S_EAX
    movw $SEL_CRD, %ax
    movw %ax, %ds
    movl BOFF(sg_b_magic), %eax
    DONE
SDMCASE code_write_via_ds, 0, 13, 0, 9f
    movw $SEL_CRD, %ax
    movw %ax, %ds
9:  movl %eax, BOFF(sg_b_magic)
    DONE
SDMCASE cs_write, 0, 13, 0, 9f
9:  movl %eax, %cs:sg_ustack_top
    DONE

/* ------------------------------------------------------- null selectors */
CASE null_ds_load, 0
    xorl %eax, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    DONE
SDMCASE null_ds_read, 0, 13, 0, 9f
    xorl %eax, %eax
    movw %ax, %ds
9:  movl 0x100, %eax
    DONE
SDMCASE null_es_stos, S_EDI, 13, 0, 9f, 0, 0, 0x100
    xorl %eax, %eax
    movw %ax, %es
    movl $0x100, %edi
9:  stosb
    DONE
SDMCASE null_gs_rpl3_read, 0, 13, 0, 9f
    movw $3, %ax
    movw %ax, %gs
9:  movb %gs:0, %al
    DONE

/* --------------------------------------------------- segment loads (errors) */
CASE load_ds_not_present, 0
    movw $SEL_DNP, %ax
    movw %ax, %ds
    DONE
CASE load_ss_not_present, 0
    movw $SEL_DNP, %ax
    movw %ax, %ss
    DONE
CASE load_ds_tss, 0
    movw $SEL_TSS, %ax
    movw %ax, %ds
    DONE
CASE load_ds_exec_only, 0
    movw $SEL_CXO, %ax
    movw %ax, %ds
    DONE
CASE load_ds_readable_code, 0
    movw $SEL_CRD, %ax
    movw %ax, %ds
    DONE
CASE load_ss_code, 0
    movw $SEL_CRD, %ax
    movw %ax, %ss
    DONE
CASE load_ss_read_only, 0
    movw $SEL_DRO, %ax
    movw %ax, %ss
    DONE
CASE load_ss_rpl3, 0
    movw $(SEL_KDATA | 3), %ax
    movw %ax, %ss
    DONE
CASE load_ss_dpl3, 0
    movw $SEL_UDATA, %ax
    movw %ax, %ss
    DONE
CASE load_ss_null, 0
    xorl %eax, %eax
    movw %ax, %ss
    DONE
CASE load_ds_past_gdt, 0
    movw $SEL_BEYOND, %ax
    movw %ax, %ds
    DONE
CASE load_es_ldt_without_ldt, 0
    xorl %eax, %eax
    lldt %ax                /* a null LDTR: the loader's LDTR cache is unknown */
    movw $0x34, %ax
    movw %ax, %es
    DONE
CASE pop_ds_not_present, S_ESP
    pushl $SEL_DNP
    popl %ds
    DONE
CASE lds_not_present, 0
    movl $sg_farptr_np, %ebx
    ldsl (%ebx), %eax
    DONE
CASE ring3_load_ds_dpl0, 0
    TO_RING3
    movw $(SEL_KDATA | 3), %ax
    movw %ax, %ds
    DONE
CASE ring3_load_ss_dpl0, 0
    TO_RING3
    movw $(SEL_KDATA | 3), %ax
    movw %ax, %ss
    DONE

CASE load_ds_rpl3_dpl0, 0
    movw $(SEL_KDATA | 3), %ax
    movw %ax, %ds
    DONE
CASE ring3_load_ds_conforming, 0
    TO_RING3
    movw $(SEL_CCONF | 3), %ax
    movw %ax, %ds
    DONE
CASE lss_read_only, S_ESP
    movl $sg_farptr_ro, %ebx
    lssl (%ebx), %esp
    DONE
CASE mov_cs, 0
    .byte 0x8E, 0xC8        /* mov %ax, %cs */
    DONE

/* ------------------------------------------------------------- stack limit */
SDMCASE ss_pop_past_limit, S_ESP, 12, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ss
    movl $0xFFE, %esp
9:  popl %eax
    DONE
CASE ss_pop_at_limit, S_ESP
    movw $SEL_DLIM, %ax
    movw %ax, %ss
    movl $0xFFC, %esp
    popl %eax
    DONE
SDMCASE ss_override_past_limit, 0, 12, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ss
    movl $0x800, %esp
9:  movl %ss:0x1000, %eax
    DONE
SDMCASE ebp_base_uses_ss, 0, 12, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ss
    movl $0x800, %esp
    movl $0x1000, %ebp
9:  movl (%ebp), %eax
    DONE
SDMCASE ret_pop_past_limit, S_ESP, 12, 0, 9f
    movw $SEL_DLIM, %ax
    movw %ax, %ss
    movl $0xFFE, %esp
9:  ret
SDMCASE ring3_push_past_limit, S_ESP, 12, 0, 9f
    TO_RING3
    movw $(SEL_USTK | 3), %ax
    movw %ax, %ss
    movl $0x1002, %esp
9:  pushl %eax
    DONE
SDMCASE ring3_push_wraps, S_ESP, 12, 0, 9f
    TO_RING3
    movw $(SEL_USTK | 3), %ax
    movw %ax, %ss
    movl $2, %esp
9:  pushl %eax
    DONE
SDMCASE ring3_call_past_limit, S_ESP, 12, 0, 9f
    TO_RING3
    movw $(SEL_USTK | 3), %ax
    movw %ax, %ss
    movl $0x1001, %esp
9:  call 3f
3:  DONE
SDMCASE ring3_push_expdown_below, S_ESP, 12, 0, 9f
    TO_RING3
    movw $(SEL_USTKED | 3), %ax
    movw %ax, %ss
    movl $0x1002, %esp
9:  pushl %eax
    DONE
CASE ring3_push_expdown_ok, S_ESP
    TO_RING3
    movw $(SEL_USTKED | 3), %ax
    movw %ax, %ss
    movl $0x1004, %esp
    pushl %eax
    DONE
SDMCASE ring3_pushw_expdown, S_ESP, 12, 0, 9f
    TO_RING3
    movw $(SEL_USTKED | 3), %ax
    movw %ax, %ss
    movl $0x1002, %esp
    pushw %ax
9:  pushw %ax
    DONE

/* ---------------------------------------------------------- far transfers */
CASE far_jmp_past_limit, 0
    ljmp $SEL_CRD, $0x1000
CASE far_jmp_to_edge, 0
    ljmp $SEL_CRD, $BOFF(sg_b_edge)
SDMCASE far_call_past_limit, S_ESP, 13, 0, 9f
9:  lcall $SEL_CRD, $0x1000
CASE far_jmp_indirect_past_limit, 0
    movl $sg_farptr_past, %ebx
    ljmp *(%ebx)
CASE far_jmp_not_present, 0
    ljmp $SEL_DNP, $0
CASE far_jmp_to_data, 0
    ljmp $SEL_KDATA, $0
SDMCASE fetch_straddles_limit, 0, 13, 0, BOFF(sg_b_straddle)
    ljmp $SEL_CRD, $BOFF(sg_b_nops)
CASE far_jmp_code_not_present, 0
    ljmp $SEL_CNP, $0
CASE far_jmp_rpl3_to_dpl0, 0
    ljmp $(SEL_KCODE | 3), $0
CASE ring3_far_call_to_dpl0, S_ESP
    TO_RING3
    lcall $SEL_KCODE, $0
CASE ring3_far_jmp_conforming, S_EAX
    TO_RING3
    ljmp $SEL_CCONF, $3f
3:  movl %cs, %eax          /* RPL = CPL 3: a conforming segment keeps CPL */
    DONE
SDMCASE fetch_straddles_limit_midpage, 0, 13, 0, BOFF(sg_b_straddle_mid)
    ljmp $SEL_CMID, $BOFF(sg_b_nops_mid)
SDMCASE loop_past_limit, S_ECX, 13, 0, BOFF(sg_b_loopout_f), 2
    ljmp $SEL_CRD, $BOFF(sg_b_loopout)
SDMCASE near_ret_past_limit, S_ESP, 13, 0, BOFF(sg_b_retout_f)
    ljmp $SEL_CRD, $BOFF(sg_b_retout)
SDMCASE near_jmp_past_limit, 0, 13, 0, BOFF(sg_b_jmpout)
    ljmp $SEL_CRD, $BOFF(sg_b_jmpout)
SDMCASE near_call_past_limit, S_ESP, 13, 0, BOFF(sg_b_callout)
    ljmp $SEL_CRD, $BOFF(sg_b_callout)
SDMCASE far_ret_past_limit, S_ESP, 13, 0, 9f
    pushl $SEL_CRD
    pushl $0x1000
9:  lret

/* ----------------------------------------------------------- 16-bit code */
CASE code16_alu, S_EAX
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    ljmp $SEL_C16, $BOFF(sg_b16_alu)
SDMCASE code16_data_limit, 0, 13, 0, BOFF(sg_b16_limit)
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    ljmp $SEL_C16, $BOFF(sg_b16_limit)
CASE code16_addr_wraps, S_EAX
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    ljmp $SEL_C16, $BOFF(sg_b16_wrap)
SDMCASE code16_addr32_no_wrap, 0, 13, 0, BOFF(sg_b16_addr32_f)
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    ljmp $SEL_C16, $BOFF(sg_b16_addr32)
SDMCASE code16_bp_uses_ss, S_ESP, 12, 0, BOFF(sg_b16_bp_f)
    movw $SEL_DLIM, %ax
    movw %ax, %ss
    movl $0x800, %esp
    ljmp $SEL_C16, $BOFF(sg_b16_bp)
CASE code16_jmp_wraps_ip, S_EAX
    ljmp $SEL_C16, $HOFF(sg_hi_jmp)
CASE code16_loop_wraps_ip, S_EAX|S_ECX
    ljmp $SEL_C16, $HOFF(sg_hi_loop)
CASE code16_jcc_wraps_ip, S_EAX
    ljmp $SEL_C16, $HOFF(sg_hi_jcc)
CASE code16_jmp_back_wraps_ip, S_EAX
    ljmp $SEL_C16, $BOFF(sg_b16_back)
SDMCASE code16_fetch_past_limit, 0, 13, 0, 0xFFFF
    ljmp $SEL_C16, $HOFF(sg_hi_nops)
CASE code16_far_call_ret, S_EAX|S_ESP
    ljmp $SEL_C16, $BOFF(sg_b16_call)

/* ------------------------------------------------- string instructions */
SDMCASE rep_stosd_dst_limit, S_ECX|S_EDI, 13, 0, 9f, 4, 0, 0x1000
    movw $SEL_DLIM, %ax
    movw %ax, %es
    movl $0xFF0, %edi
    movl $8, %ecx
9:  rep stosl
    DONE
SDMCASE rep_movsb_src_limit, S_ECX|S_ESI|S_EDI, 13, 0, 9f, 8, 0x1000, 0x1002008
    movw $SEL_DLIM, %ax
    movw %ax, %ds
    movl $0xFF8, %esi
    movl $0x1002000, %edi
    movl $16, %ecx
9:  rep movsb
    DONE
SDMCASE rep_movsw_dst_limit, S_ECX|S_ESI|S_EDI, 13, 0, 9f, 13, 0x1002006, 0xFFF
    movw $SEL_DLIM, %ax
    movw %ax, %es
    movl $0x1002000, %esi
    movl $0xFF9, %edi
    movl $16, %ecx
9:  rep movsw
    DONE
SDMCASE rep_lodsd_expdown_backwards, S_ECX|S_ESI, 13, 0, 9f, 4, 0xFFC, 0
    movw $SEL_DED32, %ax
    movw %ax, %ds
    movl $0x100C, %esi
    movl $8, %ecx
    std
9:  rep lodsl
    cld
    DONE
CASE rep_stosb_complete, S_ECX|S_EDI
    movw $SEL_DLIM, %ax
    movw %ax, %es
    movl $0xFF0, %edi
    movl $16, %ecx
    rep stosb
    DONE
SDMCASE rep_cmpsb_limit, S_ECX|S_ESI|S_EDI, 13, 0, 9f, 4, 0x1001000, 0x1000
    movw $SEL_DLIM, %ax
    movw %ax, %es
    movl $0x1000FFC, %esi          /* the same bytes: REPE runs to the limit */
    movl $0xFFC, %edi
    movl $8, %ecx
9:  repe cmpsb
    DONE

    .section .rodata.sgcases, "a"
    .globl sg_cases_end
sg_cases_end:

/* ------------------------------------------- blob (copied to BLOB_BASE) */
    .section .text.sgblob, "ax"
sg_blob:
    .org 0x10
    .code16
sg_b16_land1:               /* IP 0x0010: code16_jmp_wraps_ip lands here */
    movw $0x1111, %ax
    DONE
    .org 0x20
sg_b16_land2:               /* IP 0x0020: code16_loop_wraps_ip */
    movw $0x2222, %ax
    DONE
    .org 0x30
sg_b16_land3:               /* IP 0x0030: code16_jcc_wraps_ip */
    movw $0x3333, %ax
    DONE
    .org 0x40
sg_b16_back:                /* IP 0x0040: JMP back to IP 0xFFF0 (wraps below 0) */
    .byte 0xEB, 0xAE        /* jmp rel8 -0x52: 0x0042 - 0x52 = 0xFFF0 */

    .org 0x80
    .code32
sg_b_csread:
    movl %cs:BOFF(sg_b_magic), %eax
    DONE
    .balign 4
sg_b_magic:
    .long 0xCAFEF00D
sg_b_jmpout:                /* near JMP to 0x1000, past CS limit 0xFFF */
    .byte 0xE9
    .long 0x1000 - (BOFF(sg_b_jmpout) + 5)
sg_b_callout:               /* near CALL to 0x1000, past CS limit 0xFFF */
    .byte 0xE8
    .long 0x1000 - (BOFF(sg_b_callout) + 5)

    .org 0x200
    .code16
sg_b16_alu:
    movw $0x1234, %ax
    addw $0xF00F, %ax       /* 0x0243, CF=1 */
    adcw $0, %ax            /* 0x0244 */
    movw %ax, 0x10
    movw $0x10, %bx
    movw $0x20, %si
    addw (%bx), %ax         /* 0x0488 */
    movw %ax, (%bx,%si)     /* ds:0x30 */
    incw 0x30               /* 0x0489 */
    movw 0x30, %dx
    movl %esp, %ecx
    pushw %dx               /* a 16-bit push: ESP - 2 */
    subl %esp, %ecx
    popw %dx
    movzwl %dx, %eax
    shll $16, %eax
    movw %cx, %ax           /* 0x04890002 */
    DONE
sg_b16_limit:
    movw 0xFFF, %ax
    DONE
sg_b16_wrap:
    movw $0x1234, 0x1
    movw $2, %bx
    movw 0xFFFF(%bx), %ax   /* 16-bit offset 0x10001 wraps to 0x0001 */
    DONE
sg_b16_addr32:
    movl $0x10001, %ebx
sg_b16_addr32_f:
    movb (%ebx), %al        /* address size 32: no 16-bit wrap */
    DONE
sg_b16_bp:
    movw $1, %bp
sg_b16_bp_f:
    movw 0xFFE(%bp), %ax    /* SS:0xFFF, word past SS's limit */
    DONE
sg_b16_call:
    movl %esp, %ebx
    lcallw $SEL_C16, $BOFF(sg_b16_callee)
    subl %esp, %ebx         /* 0 after the far return */
    movl %ebx, %eax
    DONE
sg_b16_callee:
    movl %ebx, %ecx
    subl %esp, %ecx         /* a 16-bit far call pushes 4 bytes */
    cmpw $4, %cx
    jne 3f
    lretw
3:  movw $0xBAD, %ax
    DONE

    .org 0x7FA
    .code32
sg_b_nops_mid:              /* 0x7FA: under SEL_CMID (limit 0x7FF), in mid-page */
    nop
    nop
    nop
    nop
sg_b_straddle_mid:
    .byte 0xB8, 1, 2, 3, 4

    .org 0xF90
sg_b_loopout:               /* LOOP to 0x1000: #GP(0) with ECX still 2 */
    movl $2, %ecx
sg_b_loopout_f:
    .byte 0xE2, 0x1000 - (BOFF(sg_b_loopout_f) + 2)
sg_b_retout:                /* RET to 0x1000: #GP(0) with the address still pushed */
    pushl $0x1000
sg_b_retout_f:
    ret

    .org 0xFF8
sg_b_edge:                  /* far_jmp_to_edge: INT 0x40 ends at 0xFF9 */
    DONE
sg_b_nops:                  /* 0xFFA: four NOPs, then MOV EAX,imm32 at 0xFFE */
    nop
    nop
    nop
    nop
sg_b_straddle:
    .byte 0xB8, 1, 2, 3, 4
sg_blob_end:

/* ---------------------------------- top of the 16-bit segment (HI_BASE) */
    .section .text.sghi, "ax"
    .code16
sg_hi:
sg_hi_jmp:                  /* IP 0xFFF0: JMP forward wraps to 0x0010 */
    .byte 0xEB, 0x1E
sg_hi_loop:                 /* IP 0xFFF2: MOV CX,2 ; LOOP to 0x0020 */
    .byte 0xB9, 0x02, 0x00
    .byte 0xE2, 0x29
sg_hi_jcc:                  /* IP 0xFFF7: XOR AX,AX ; JZ to 0x0030 */
    .byte 0x31, 0xC0
    .byte 0x74, 0x35
sg_hi_nops:                 /* IP 0xFFFB: NOPs, then MOV AL,imm8 at 0xFFFF */
    nop
    nop
    nop
    nop
    .byte 0xB0
sg_hi_end:

/* ------------------------------------------------------------- harness */
    .section .text.sgmain, "ax"
    .code32
    .globl guest_pre32
guest_pre32:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl %esp, sg_saved_esp
    sidt sg_saved_idt

    /* "sdm=0" in the multiboot command line skips the SDMCASEs */
    movl rt_boot_mbi, %esi
    testl %esi, %esi
    jz 6f
    testb $4, (%esi)
    jz 6f
    movl 16(%esi), %esi
5:  cmpb $0, (%esi)
    je 6f
    cmpl $0x3D6D6473, (%esi)            /* "sdm=" */
    jne 7f
    cmpb $'0', 4(%esi)
    jne 7f
    movl $1, sg_sdm_off
7:  incl %esi
    jmp 5b
6:

    /* TSS descriptor base, then the IDT gates */
    movl $sg_tss, %eax
    movw %ax, sg_gdt + SEL_TSS + 2
    shrl $16, %eax
    movb %al, sg_gdt + SEL_TSS + 4
    movb %ah, sg_gdt + SEL_TSS + 7
    movl $sg_kstack_top, sg_tss + 4      /* ESP0 */
    movl $SEL_KDATA, sg_tss + 8          /* SS0 */
    movw $104, sg_tss + 102              /* no I/O bitmap */

    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $4, %eax
    addl $sg_stubs, %eax
    movl %eax, %edx
    andl $0xFFFF, %eax
    orl $(SEL_KCODE << 16), %eax
    andl $0xFFFF0000, %edx
    orl $0x8E00, %edx
    movl %eax, sg_idt(,%ecx,8)
    movl %edx, sg_idt + 4(,%ecx,8)
    incl %ecx
    cmpl $32, %ecx
    jb 1b
    movl $(sg_stubs + 32 * 16), %eax     /* INT 0x40: DPL 3 */
    movl %eax, %edx
    andl $0xFFFF, %eax
    orl $(SEL_KCODE << 16), %eax
    andl $0xFFFF0000, %edx
    orl $0xEE00, %edx
    movl %eax, sg_idt + VEC_DONE * 8
    movl %edx, sg_idt + VEC_DONE * 8 + 4

    lgdt sg_gdt_desc
    lidt sg_idt_desc
    ljmp $SEL_KCODE, $2f
2:  movw $SEL_KDATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movw $SEL_TSS, %ax
    ltr %ax

    /* code blobs, and a little data at 16 MiB */
    cld
    movl $sg_blob, %esi
    movl $BLOB_BASE, %edi
    movl $(sg_blob_end - sg_blob), %ecx
    rep movsb
    movl $sg_hi, %esi
    movl $HI_BASE, %edi
    movl $(sg_hi_end - sg_hi), %ecx
    rep movsb
    movl $0x1000000, %edi
    movl $0x4000, %ecx
    xorl %eax, %eax
3:  movl %eax, (%edi)
    addl $0x01010101, %eax
    addl $4, %edi
    loop 3b

    xorl %ebx, %ebx
sg_next:
    movl %ebx, sg_cur
    imull $32, %ebx, %eax
    addl $sg_cases, %eax
    cmpl $sg_cases_end, %eax
    jae sg_finished
    movl $0xFFFFFFFE, sg_r_vec          /* skipped */
    testl $S_SDM, 8(%eax)
    jz 4f
    cmpl $0, sg_sdm_off
    jne sg_after
4:  movl (%eax), %eax
    movl %eax, sg_fn
    movl $0xFFFFFFFF, sg_r_vec
    movl %esp, sg_case_esp
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %edi, %edi
    xorl %ebp, %ebp
    call *sg_fn
    /* a case that returns (it should not) is recorded as vector 0xFFFFFFFF */
sg_after:
    movl sg_cur, %ebx
    imull $36, %ebx, %edi
    addl $sg_results, %edi
    movl $sg_r_vec, %esi
    movl $9, %ecx
    rep movsl
    incl %ebx
    cmpl $SG_MAX, %ebx
    jb sg_next
sg_finished:
    movl %ebx, sg_count
    lidt sg_saved_idt
    movl sg_saved_esp, %esp
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

/* Exception and INT 0x40 entry. Stack: vec, err, eip, cs, eflags[, esp, ss]. */
sg_trap:
    pushl %eax
    movw $SEL_KDATA, %ax
    movw %ax, %ds
    popl sg_r_eax
    movl %ecx, sg_r_ecx
    movl %esi, sg_r_esi
    movl %edi, sg_r_edi
    popl sg_r_vec
    popl sg_r_err
    popl sg_r_eip
    popl sg_r_cs
    popl %eax
    movl %esp, sg_r_esp
    testb $3, sg_r_cs
    jz 1f
    popl sg_r_esp
1:  movw $SEL_KDATA, %ax
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl sg_case_esp, %esp
    cld
    jmp sg_after

/* 33 stubs, 16 bytes apart: vectors 0-31 and INT 0x40 */
    .balign 16
sg_stubs:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign 16
    .if (\v == 8) || (\v == 10) || (\v == 11) || (\v == 12) || (\v == 13) || (\v == 14) || (\v == 17)
    pushl $\v
    .else
    pushl $0
    pushl $\v
    .endif
    jmp sg_trap
.endr
    .balign 16
    pushl $0
    pushl $VEC_DONE
    jmp sg_trap

/* ------------------------------------------------------------------ data */
    .section .data.sg, "aw"
    .balign 16
sg_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF        /* 0x08 code32 flat */
    .quad 0x00CF92000000FFFF        /* 0x10 data flat */
    .quad 0x0000890000000067        /* 0x18 TSS (base set at run time) */
    .quad 0x00CFFA000000FFFF        /* 0x20 user code32 flat */
    .quad 0x00CFF2000000FFFF        /* 0x28 user data flat */
    .quad 0x0140920000000FFF        /* 0x30 data base 16M limit 0xFFF */
    .quad 0x0140900000000FFF        /* 0x38 read-only data */
    .quad 0x0140960000000FFF        /* 0x40 expand-down B=1 */
    .quad 0x0100960000000FFF        /* 0x48 expand-down B=0 */
    .quad 0x0040980200000FFF        /* 0x50 execute-only code32, base 0x20000 */
    .quad 0x00409A0200000FFF        /* 0x58 readable code32, base 0x20000 */
    .quad 0x00009A020000FFFF        /* 0x60 code16, base 0x20000, limit 0xFFFF */
    .quad 0x00CF12000000FFFF        /* 0x68 data, not present */
    .quad 0x0140F20000000FFF        /* 0x70 DPL3 data base 16M limit 0xFFF */
    .quad 0x0140F60000000FFF        /* 0x78 DPL3 expand-down B=1 */
    .quad 0x00409A02000007FF        /* 0x80 readable code32, base 0x20000, limit 0x7FF */
    .quad 0x00CF1A000000FFFF        /* 0x88 code32, not present */
    .quad 0x00CF9E000000FFFF        /* 0x90 conforming readable code32, DPL 0 */
sg_gdt_end:
    .balign 8
sg_gdt_desc:
    .word sg_gdt_end - sg_gdt - 1
    .long sg_gdt
    .balign 8
sg_idt_desc:
    .word (VEC_DONE + 1) * 8 - 1
    .long sg_idt
    .balign 8
sg_saved_idt:   .word 0
                .long 0
    .balign 4
sg_farptr_np:   .long 0x100
                .word SEL_DNP
    .balign 4
sg_farptr_past: .long 0x1000
                .word SEL_CRD
    .balign 4
sg_farptr_ro:   .long 0x800
                .word SEL_DRO
    .balign 4
sg_saved_esp:   .long 0
sg_case_esp:    .long 0
sg_fn:          .long 0
sg_cur:         .long 0
sg_sdm_off:     .long 0
    .globl sg_count
sg_count:       .long 0
/* the record of the last case, copied to sg_results[sg_cur] (struct sg_result) */
sg_r_vec:       .long 0
sg_r_err:       .long 0
sg_r_eip:       .long 0
sg_r_cs:        .long 0
sg_r_eax:       .long 0
sg_r_ecx:       .long 0
sg_r_esi:       .long 0
sg_r_edi:       .long 0
sg_r_esp:       .long 0

    .section .bss.sg, "aw", @nobits
    .balign 4096
sg_idt:         .skip (VEC_DONE + 1) * 8
sg_tss:         .skip 104
    .balign 16
    .globl sg_results
sg_results:     .skip SG_MAX * 36
    .balign 16
                .skip 4096
sg_kstack_top:
                .skip 4096
sg_ustack_top:
