/*
 * SwiftVMM hypercall ABI, guest side (see docs/HYPERCALLS.md, which is the
 * normative description; keep the two in sync). Additive runtime header,
 * used by the pv_mmu guest.
 */
#ifndef GUEST_HYPERCALL_H
#define GUEST_HYPERCALL_H

#include <stdint.h>

/* ---- detection (CPUID) ---- */
#define SVM_CPUID_BASE        0x40000000u   /* EAX = max leaf, EBX/ECX/EDX = "SwiftVMM\0\0\0\0" */
#define SVM_CPUID_FEATURES    0x40000001u   /* EAX feature bits (relative to the base) */
#define SVM_SIG_EBX           0x66697753u   /* "Swif" */
#define SVM_SIG_ECX           0x4D4D5674u   /* "tVMM" */
#define SVM_SIG_EDX           0x00000000u   /* "\0\0\0\0" */
#define SVM_FEAT_PV_MMU       (1u << 0)     /* VM runs with --mmu paravirt */

/* ---- hypercall numbers (RAX) ---- */
#define HC_PV_HELLO           0x53560001u   /* RBX = guest ABI version -> VMM ABI version */
#define HC_MMU_UPDATE         0x53560002u   /* RBX = GPA of hc_mmu_update[RCX], RCX = count <= 512 */
#define HC_PIN_TABLE          0x53560003u   /* RBX = GPA of a 4 KiB table, RCX = level 1..4 */
#define HC_UNPIN_TABLE        0x53560004u   /* RBX = GPA of a pinned table */
#define HC_NEW_BASEPTR        0x53560005u   /* RBX = GPA of a table pinned at level 4: loads CR3 */
#define HC_INVLPG             0x53560006u   /* RBX = linear address */
#define HC_FLUSH_TLB          0x53560007u   /* all translations, global ones included */

#define HC_ABI_VERSION        1
#define HC_MMU_UPDATE_MAX     512

/* ---- errors: RAX = -errno ---- */
#define HC_EPERM              1             /* rule violation */
#define HC_EFAULT             14            /* address outside guest RAM */
#define HC_EINVAL             22            /* malformed request */
#define HC_ENOSYS             38            /* unknown number / PV MMU not offered */

struct hc_mmu_update {
    uint64_t ptr;       /* GPA of the 8-byte entry to write (8-byte aligned, in a pinned table) */
    uint64_t val;       /* new entry value (guest-physical addresses) */
};

/* One hypercall with VMCALL (0F 01 C1); VMMCALL (0F 01 D9) is accepted too.
 * Returns RAX; *rdx_out (if given) receives RDX (the failing index for
 * HC_MMU_UPDATE / HC_PIN_TABLE errors). Every other register is preserved. */
static inline int64_t hypercall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                                uint64_t *rdx_out)
{
    uint64_t rax = nr, rdx = a2;
    __asm__ volatile("vmcall" : "+a"(rax), "+d"(rdx) : "b"(a0), "c"(a1), "S"(a3) : "memory");
    if (rdx_out)
        *rdx_out = rdx;
    return (int64_t)rax;
}

static inline int64_t hypercall_vmmcall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                                        uint64_t *rdx_out)
{
    uint64_t rax = nr, rdx = a2;
    __asm__ volatile("vmmcall" : "+a"(rax), "+d"(rdx) : "b"(a0), "c"(a1), "S"(a3) : "memory");
    if (rdx_out)
        *rdx_out = rdx;
    return (int64_t)rax;
}

#endif
