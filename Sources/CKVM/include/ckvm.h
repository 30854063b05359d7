// CKVM: a thin C shim over the /dev/kvm ioctls.
//
// Swift cannot call the variadic ioctl() nicely, and kvm_run / kvm_cpuid2 use
// unions and flexible arrays. This header only uses plain fixed-size structs so
// that the Swift side compiles on every platform; on hosts without KVM every
// call fails with -ENOSYS. All functions return >= 0 on success and -errno on
// failure. No policy lives here: the logic is in the Swift KVM module.
#ifndef CKVM_H
#define CKVM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Exit reasons (values of KVM_EXIT_* from <linux/kvm.h>, stable kernel ABI).
enum {
  CKVM_EXIT_UNKNOWN = 0,
  CKVM_EXIT_EXCEPTION = 1,
  CKVM_EXIT_IO = 2,
  CKVM_EXIT_HYPERCALL = 3,
  CKVM_EXIT_DEBUG = 4,
  CKVM_EXIT_HLT = 5,
  CKVM_EXIT_MMIO = 6,
  CKVM_EXIT_IRQ_WINDOW_OPEN = 7,
  CKVM_EXIT_SHUTDOWN = 8,
  CKVM_EXIT_FAIL_ENTRY = 9,
  CKVM_EXIT_INTR = 10,
  CKVM_EXIT_SET_TPR = 11,
  CKVM_EXIT_TPR_ACCESS = 12,
  CKVM_EXIT_NMI = 16,
  CKVM_EXIT_INTERNAL_ERROR = 17,
  CKVM_EXIT_SYSTEM_EVENT = 24,
  CKVM_EXIT_X86_RDMSR = 29,
  CKVM_EXIT_X86_WRMSR = 30,
};

// Capabilities the Swift side asks about (KVM_CAP_* values).
enum {
  CKVM_CAP_IRQCHIP = 0,
  CKVM_CAP_HLT = 1,
  CKVM_CAP_USER_MEMORY = 3,
  CKVM_CAP_SET_TSS_ADDR = 4,
  CKVM_CAP_EXT_CPUID = 7,
  CKVM_CAP_NR_VCPUS = 9,
  CKVM_CAP_NR_MEMSLOTS = 10,
  CKVM_CAP_PIT2 = 33,
  CKVM_CAP_SET_IDENTITY_MAP_ADDR = 37,
  CKVM_CAP_MAX_VCPUS = 66,
  CKVM_CAP_IMMEDIATE_EXIT = 136,
  CKVM_CAP_USER_NMI = 22,
  CKVM_CAP_SPLIT_IRQCHIP = 121,
  CKVM_CAP_X86_USER_SPACE_MSR = 188,
  CKVM_CAP_X86_MSR_FILTER = 189,
};

enum { CKVM_CPUID_FLAG_SIGNIFICANT_INDEX = 1 };

// Mirrors struct kvm_regs.
typedef struct {
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rip, rflags;
} ckvm_regs;

// Mirrors struct kvm_segment (one byte per flag).
typedef struct {
  uint64_t base;
  uint32_t limit;
  uint16_t selector;
  uint8_t type, present, dpl, db, s, l, g, avl, unusable;
} ckvm_segment;

typedef struct {
  uint64_t base;
  uint16_t limit;
} ckvm_dtable;

// Mirrors struct kvm_sregs.
typedef struct {
  ckvm_segment cs, ds, es, fs, gs, ss, tr, ldt;
  ckvm_dtable gdt, idt;
  uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
  uint64_t interrupt_bitmap[4];
} ckvm_sregs;

// Mirrors struct kvm_cpuid_entry2 without the padding.
typedef struct {
  uint32_t function, index, flags;
  uint32_t eax, ebx, ecx, edx;
} ckvm_cpuid_entry;

typedef struct {
  uint8_t direction;  // 0 = in, 1 = out
  uint8_t size;       // 1, 2 or 4
  uint16_t port;
  uint32_t count;     // > 1 for REP INS/OUTS
  uint64_t data_offset;  // from the start of the run page
} ckvm_io_exit;

typedef struct {
  uint64_t phys_addr;
  uint8_t data[8];
  uint32_t len;
  uint8_t is_write;
} ckvm_mmio_exit;

typedef struct {
  uint32_t suberror;
  uint32_t ndata;
  uint64_t data[16];
} ckvm_internal_exit;

typedef struct {
  uint64_t nr;
  uint64_t args[6];
  uint64_t ret;
  uint32_t longmode;
} ckvm_hypercall_exit;

// System (/dev/kvm) and VM file descriptors.
int ckvm_open(const char *path);
int ckvm_close(int fd);
int ckvm_get_api_version(int kvm_fd);
int ckvm_check_extension(int fd, long capability);
int ckvm_create_vm(int kvm_fd);
int ckvm_set_user_memory_region(
    int vm_fd, uint32_t slot, uint32_t flags, uint64_t guest_phys_addr, uint64_t size,
    void *host_address);
int ckvm_set_tss_addr(int vm_fd, uint64_t address);
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address);
int ckvm_create_irqchip(int vm_fd);
int ckvm_irq_line(int vm_fd, uint32_t irq, int level);
int ckvm_create_vcpu(int vm_fd, unsigned long id);
int ckvm_get_vcpu_mmap_size(int kvm_fd);

// Fills up to `capacity` entries; *count receives how many KVM returned.
// Returns -E2BIG when `capacity` is too small.
int ckvm_get_supported_cpuid(
    int kvm_fd, ckvm_cpuid_entry *entries, uint32_t capacity, uint32_t *count);

// vCPU file descriptors.
void *ckvm_map_run(int vcpu_fd, size_t size, int *error);
int ckvm_unmap_run(void *run, size_t size);
int ckvm_get_regs(int vcpu_fd, ckvm_regs *regs);
int ckvm_set_regs(int vcpu_fd, const ckvm_regs *regs);
int ckvm_get_sregs(int vcpu_fd, ckvm_sregs *sregs);
int ckvm_set_sregs(int vcpu_fd, const ckvm_sregs *sregs);
int ckvm_set_cpuid2(int vcpu_fd, const ckvm_cpuid_entry *entries, uint32_t count);
// Returns how many MSRs were read/written (stops at the first KVM refuses).
int ckvm_get_msrs(int vcpu_fd, const uint32_t *indices, uint64_t *values, uint32_t count);
int ckvm_set_msrs(int vcpu_fd, const uint32_t *indices, const uint64_t *values, uint32_t count);
int ckvm_run(int vcpu_fd);
// Injects external interrupt `vector` (KVM_INTERRUPT; only without an in-kernel irqchip).
int ckvm_interrupt(int vcpu_fd, uint32_t vector);
// Injects an NMI (KVM_NMI).
int ckvm_nmi(int vcpu_fd);

// kvm_run page accessors.
uint32_t ckvm_run_exit_reason(const void *run);
void ckvm_run_io(const void *run, ckvm_io_exit *out);
void ckvm_run_mmio(const void *run, ckvm_mmio_exit *out);
void ckvm_run_set_mmio_data(void *run, uint64_t value);
uint64_t ckvm_run_fail_entry_reason(const void *run, uint32_t *cpu);
void ckvm_run_internal(const void *run, ckvm_internal_exit *out);
void ckvm_run_hypercall(const void *run, ckvm_hypercall_exit *out);
void ckvm_run_set_hypercall_ret(void *run, uint64_t value);
uint32_t ckvm_run_system_event_type(const void *run);
uint64_t ckvm_run_hardware_exit_reason(const void *run);
// Interrupt-window fields of kvm_run, for a VMM that injects interrupts itself.
uint8_t ckvm_run_ready_for_interrupt_injection(const void *run);
uint8_t ckvm_run_if_flag(const void *run);
void ckvm_run_set_request_interrupt_window(void *run, uint8_t value);
// CR8 as KVM reports it at an exit, and the value KVM loads at the next entry
// (only honoured without an in-kernel LAPIC).
uint64_t ckvm_run_cr8(const void *run);
void ckvm_run_set_cr8(void *run, uint64_t value);
// Atomic store; safe from any thread.
void ckvm_run_set_immediate_exit(void *run, uint8_t value);

// Installs a handler that does nothing, without SA_RESTART, so the signal
// only interrupts KVM_RUN with EINTR. Returns 0 or -errno.
int ckvm_install_kick_handler(int signal_number);
// Unblocks the signal in the calling thread (worker threads often block it).
int ckvm_unblock_signal(int signal_number);

#ifdef __cplusplus
}
#endif

#endif
