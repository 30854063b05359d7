// Thin wrappers over the KVM ioctls; see include/ckvm.h.
#include "ckvm.h"

#include <errno.h>

#ifdef __linux__

#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

// The exit reasons and capabilities in ckvm.h must match the kernel ABI.
_Static_assert(CKVM_EXIT_IO == KVM_EXIT_IO, "exit reason mismatch");
_Static_assert(CKVM_EXIT_INTERNAL_ERROR == KVM_EXIT_INTERNAL_ERROR, "exit reason mismatch");
_Static_assert(CKVM_EXIT_SYSTEM_EVENT == KVM_EXIT_SYSTEM_EVENT, "exit reason mismatch");
_Static_assert(CKVM_EXIT_X86_WRMSR == KVM_EXIT_X86_WRMSR, "exit reason mismatch");
_Static_assert(CKVM_CAP_IMMEDIATE_EXIT == KVM_CAP_IMMEDIATE_EXIT, "capability mismatch");
_Static_assert(CKVM_CAP_SET_IDENTITY_MAP_ADDR == KVM_CAP_SET_IDENTITY_MAP_ADDR, "cap mismatch");
_Static_assert(CKVM_CAP_MAX_VCPUS == KVM_CAP_MAX_VCPUS, "capability mismatch");
_Static_assert(CKVM_CAP_USER_NMI == KVM_CAP_USER_NMI, "capability mismatch");
_Static_assert(CKVM_CAP_SPLIT_IRQCHIP == KVM_CAP_SPLIT_IRQCHIP, "capability mismatch");
_Static_assert(CKVM_CAP_X86_USER_SPACE_MSR == KVM_CAP_X86_USER_SPACE_MSR, "capability mismatch");
_Static_assert(CKVM_CAP_X86_MSR_FILTER == KVM_CAP_X86_MSR_FILTER, "capability mismatch");
_Static_assert(CKVM_EXIT_IRQ_WINDOW_OPEN == KVM_EXIT_IRQ_WINDOW_OPEN, "exit reason mismatch");
_Static_assert(CKVM_CPUID_FLAG_SIGNIFICANT_INDEX == KVM_CPUID_FLAG_SIGNIFCANT_INDEX, "flag");

static int result(int r) { return r < 0 ? -errno : r; }

int ckvm_open(const char *path) { return result(open(path, O_RDWR | O_CLOEXEC)); }
int ckvm_close(int fd) { return result(close(fd)); }
int ckvm_get_api_version(int kvm_fd) { return result(ioctl(kvm_fd, KVM_GET_API_VERSION, 0)); }
int ckvm_check_extension(int fd, long capability) {
  return result(ioctl(fd, KVM_CHECK_EXTENSION, capability));
}
int ckvm_create_vm(int kvm_fd) { return result(ioctl(kvm_fd, KVM_CREATE_VM, 0)); }

int ckvm_set_user_memory_region(
    int vm_fd, uint32_t slot, uint32_t flags, uint64_t guest_phys_addr, uint64_t size,
    void *host_address) {
  struct kvm_userspace_memory_region region = {
      .slot = slot,
      .flags = flags,
      .guest_phys_addr = guest_phys_addr,
      .memory_size = size,
      .userspace_addr = (uint64_t)(uintptr_t)host_address,
  };
  return result(ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region));
}

int ckvm_set_tss_addr(int vm_fd, uint64_t address) {
  return result(ioctl(vm_fd, KVM_SET_TSS_ADDR, (unsigned long)address));
}
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address) {
  return result(ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &address));
}
int ckvm_create_irqchip(int vm_fd) { return result(ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0)); }
int ckvm_irq_line(int vm_fd, uint32_t irq, int level) {
  struct kvm_irq_level l = {.irq = irq, .level = level ? 1 : 0};
  return result(ioctl(vm_fd, KVM_IRQ_LINE, &l));
}
int ckvm_create_vcpu(int vm_fd, unsigned long id) {
  return result(ioctl(vm_fd, KVM_CREATE_VCPU, id));
}
int ckvm_get_vcpu_mmap_size(int kvm_fd) {
  return result(ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0));
}

int ckvm_get_supported_cpuid(
    int kvm_fd, ckvm_cpuid_entry *entries, uint32_t capacity, uint32_t *count) {
  *count = 0;
  struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)capacity * sizeof(c->entries[0]));
  if (!c) return -ENOMEM;
  c->nent = capacity;
  int r = result(ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c));
  if (r >= 0) {
    for (uint32_t i = 0; i < c->nent && i < capacity; i++) {
      entries[i] = (ckvm_cpuid_entry){
          c->entries[i].function, c->entries[i].index, c->entries[i].flags,
          c->entries[i].eax,      c->entries[i].ebx,   c->entries[i].ecx,
          c->entries[i].edx};
    }
    *count = c->nent;
  }
  free(c);
  return r;
}

void *ckvm_map_run(int vcpu_fd, size_t size, int *error) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
  if (p == MAP_FAILED) {
    *error = errno;
    return NULL;
  }
  *error = 0;
  return p;
}
int ckvm_unmap_run(void *run, size_t size) { return result(munmap(run, size)); }

int ckvm_get_regs(int vcpu_fd, ckvm_regs *out) {
  struct kvm_regs r;
  int e = result(ioctl(vcpu_fd, KVM_GET_REGS, &r));
  if (e < 0) return e;
  *out = (ckvm_regs){r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8,
                     r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags};
  return 0;
}

int ckvm_set_regs(int vcpu_fd, const ckvm_regs *in) {
  struct kvm_regs r = {
      .rax = in->rax, .rbx = in->rbx, .rcx = in->rcx, .rdx = in->rdx, .rsi = in->rsi,
      .rdi = in->rdi, .rsp = in->rsp, .rbp = in->rbp, .r8 = in->r8,   .r9 = in->r9,
      .r10 = in->r10, .r11 = in->r11, .r12 = in->r12, .r13 = in->r13, .r14 = in->r14,
      .r15 = in->r15, .rip = in->rip, .rflags = in->rflags,
  };
  return result(ioctl(vcpu_fd, KVM_SET_REGS, &r));
}

static void seg_out(ckvm_segment *o, const struct kvm_segment *s) {
  *o = (ckvm_segment){s->base, s->limit, s->selector, s->type, s->present, s->dpl,
                      s->db,   s->s,     s->l,        s->g,    s->avl,     s->unusable};
}
static void seg_in(struct kvm_segment *s, const ckvm_segment *i) {
  memset(s, 0, sizeof(*s));
  s->base = i->base;
  s->limit = i->limit;
  s->selector = i->selector;
  s->type = i->type;
  s->present = i->present;
  s->dpl = i->dpl;
  s->db = i->db;
  s->s = i->s;
  s->l = i->l;
  s->g = i->g;
  s->avl = i->avl;
  s->unusable = i->unusable;
}

int ckvm_get_sregs(int vcpu_fd, ckvm_sregs *o) {
  struct kvm_sregs s;
  int e = result(ioctl(vcpu_fd, KVM_GET_SREGS, &s));
  if (e < 0) return e;
  seg_out(&o->cs, &s.cs);
  seg_out(&o->ds, &s.ds);
  seg_out(&o->es, &s.es);
  seg_out(&o->fs, &s.fs);
  seg_out(&o->gs, &s.gs);
  seg_out(&o->ss, &s.ss);
  seg_out(&o->tr, &s.tr);
  seg_out(&o->ldt, &s.ldt);
  o->gdt = (ckvm_dtable){s.gdt.base, s.gdt.limit};
  o->idt = (ckvm_dtable){s.idt.base, s.idt.limit};
  o->cr0 = s.cr0;
  o->cr2 = s.cr2;
  o->cr3 = s.cr3;
  o->cr4 = s.cr4;
  o->cr8 = s.cr8;
  o->efer = s.efer;
  o->apic_base = s.apic_base;
  memcpy(o->interrupt_bitmap, s.interrupt_bitmap, sizeof(o->interrupt_bitmap));
  return 0;
}

int ckvm_set_sregs(int vcpu_fd, const ckvm_sregs *i) {
  struct kvm_sregs s;
  memset(&s, 0, sizeof(s));
  seg_in(&s.cs, &i->cs);
  seg_in(&s.ds, &i->ds);
  seg_in(&s.es, &i->es);
  seg_in(&s.fs, &i->fs);
  seg_in(&s.gs, &i->gs);
  seg_in(&s.ss, &i->ss);
  seg_in(&s.tr, &i->tr);
  seg_in(&s.ldt, &i->ldt);
  s.gdt.base = i->gdt.base;
  s.gdt.limit = i->gdt.limit;
  s.idt.base = i->idt.base;
  s.idt.limit = i->idt.limit;
  s.cr0 = i->cr0;
  s.cr2 = i->cr2;
  s.cr3 = i->cr3;
  s.cr4 = i->cr4;
  s.cr8 = i->cr8;
  s.efer = i->efer;
  s.apic_base = i->apic_base;
  memcpy(s.interrupt_bitmap, i->interrupt_bitmap, sizeof(s.interrupt_bitmap));
  return result(ioctl(vcpu_fd, KVM_SET_SREGS, &s));
}

int ckvm_set_cpuid2(int vcpu_fd, const ckvm_cpuid_entry *entries, uint32_t count) {
  struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)count * sizeof(c->entries[0]));
  if (!c) return -ENOMEM;
  c->nent = count;
  for (uint32_t i = 0; i < count; i++) {
    c->entries[i].function = entries[i].function;
    c->entries[i].index = entries[i].index;
    c->entries[i].flags = entries[i].flags;
    c->entries[i].eax = entries[i].eax;
    c->entries[i].ebx = entries[i].ebx;
    c->entries[i].ecx = entries[i].ecx;
    c->entries[i].edx = entries[i].edx;
  }
  int r = result(ioctl(vcpu_fd, KVM_SET_CPUID2, c));
  free(c);
  return r;
}

static struct kvm_msrs *msr_list(const uint32_t *indices, const uint64_t *values, uint32_t n) {
  struct kvm_msrs *m = calloc(1, sizeof(*m) + (size_t)n * sizeof(m->entries[0]));
  if (!m) return NULL;
  m->nmsrs = n;
  for (uint32_t i = 0; i < n; i++) {
    m->entries[i].index = indices[i];
    m->entries[i].data = values ? values[i] : 0;
  }
  return m;
}

int ckvm_get_msrs(int vcpu_fd, const uint32_t *indices, uint64_t *values, uint32_t count) {
  struct kvm_msrs *m = msr_list(indices, NULL, count);
  if (!m) return -ENOMEM;
  int r = result(ioctl(vcpu_fd, KVM_GET_MSRS, m));
  for (int i = 0; i < r && (uint32_t)i < count; i++) values[i] = m->entries[i].data;
  free(m);
  return r;
}

int ckvm_set_msrs(int vcpu_fd, const uint32_t *indices, const uint64_t *values, uint32_t count) {
  struct kvm_msrs *m = msr_list(indices, values, count);
  if (!m) return -ENOMEM;
  int r = result(ioctl(vcpu_fd, KVM_SET_MSRS, m));
  free(m);
  return r;
}

int ckvm_run(int vcpu_fd) { return result(ioctl(vcpu_fd, KVM_RUN, 0)); }

int ckvm_interrupt(int vcpu_fd, uint32_t vector) {
  struct kvm_interrupt i = {.irq = vector};
  return result(ioctl(vcpu_fd, KVM_INTERRUPT, &i));
}
int ckvm_nmi(int vcpu_fd) { return result(ioctl(vcpu_fd, KVM_NMI, 0)); }

uint8_t ckvm_run_ready_for_interrupt_injection(const void *run) {
  return ((const struct kvm_run *)run)->ready_for_interrupt_injection;
}
uint8_t ckvm_run_if_flag(const void *run) { return ((const struct kvm_run *)run)->if_flag; }
void ckvm_run_set_request_interrupt_window(void *run, uint8_t value) {
  ((struct kvm_run *)run)->request_interrupt_window = value;
}
uint64_t ckvm_run_cr8(const void *run) { return ((const struct kvm_run *)run)->cr8; }
void ckvm_run_set_cr8(void *run, uint64_t value) { ((struct kvm_run *)run)->cr8 = value; }

uint32_t ckvm_run_exit_reason(const void *run) {
  return ((const struct kvm_run *)run)->exit_reason;
}

void ckvm_run_io(const void *run, ckvm_io_exit *out) {
  const struct kvm_run *r = run;
  out->direction = r->io.direction;
  out->size = r->io.size;
  out->port = r->io.port;
  out->count = r->io.count;
  out->data_offset = r->io.data_offset;
}

void ckvm_run_mmio(const void *run, ckvm_mmio_exit *out) {
  const struct kvm_run *r = run;
  out->phys_addr = r->mmio.phys_addr;
  memcpy(out->data, r->mmio.data, sizeof(out->data));
  out->len = r->mmio.len;
  out->is_write = r->mmio.is_write;
}

void ckvm_run_set_mmio_data(void *run, uint64_t value) {
  struct kvm_run *r = run;
  // x86 is little endian: the low `len` bytes are the answer.
  memcpy(r->mmio.data, &value, sizeof(r->mmio.data));
}

uint64_t ckvm_run_fail_entry_reason(const void *run, uint32_t *cpu) {
  const struct kvm_run *r = run;
  *cpu = r->fail_entry.cpu;
  return r->fail_entry.hardware_entry_failure_reason;
}

void ckvm_run_internal(const void *run, ckvm_internal_exit *out) {
  const struct kvm_run *r = run;
  out->suberror = r->internal.suberror;
  out->ndata = r->internal.ndata;
  uint32_t n = r->internal.ndata < 16 ? r->internal.ndata : 16;
  memset(out->data, 0, sizeof(out->data));
  for (uint32_t i = 0; i < n; i++) out->data[i] = r->internal.data[i];
}

void ckvm_run_hypercall(const void *run, ckvm_hypercall_exit *out) {
  const struct kvm_run *r = run;
  out->nr = r->hypercall.nr;
  for (int i = 0; i < 6; i++) out->args[i] = r->hypercall.args[i];
  out->ret = r->hypercall.ret;
  out->longmode = r->hypercall.longmode;
}

void ckvm_run_set_hypercall_ret(void *run, uint64_t value) {
  ((struct kvm_run *)run)->hypercall.ret = value;
}

uint32_t ckvm_run_system_event_type(const void *run) {
  return ((const struct kvm_run *)run)->system_event.type;
}

uint64_t ckvm_run_hardware_exit_reason(const void *run) {
  return ((const struct kvm_run *)run)->hw.hardware_exit_reason;
}

void ckvm_run_set_immediate_exit(void *run, uint8_t value) {
  __atomic_store_n(&((struct kvm_run *)run)->immediate_exit, value, __ATOMIC_SEQ_CST);
}

static void ckvm_kick_handler(int signal_number) { (void)signal_number; }

int ckvm_install_kick_handler(int signal_number) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = ckvm_kick_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  return result(sigaction(signal_number, &sa, NULL));
}

int ckvm_unblock_signal(int signal_number) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signal_number);
  return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

#else  // !__linux__: no KVM on this platform.

int ckvm_open(const char *path) { (void)path; return -ENOSYS; }
int ckvm_close(int fd) { (void)fd; return -ENOSYS; }
int ckvm_get_api_version(int kvm_fd) { (void)kvm_fd; return -ENOSYS; }
int ckvm_check_extension(int fd, long capability) { (void)fd; (void)capability; return -ENOSYS; }
int ckvm_create_vm(int kvm_fd) { (void)kvm_fd; return -ENOSYS; }
int ckvm_set_user_memory_region(
    int vm_fd, uint32_t slot, uint32_t flags, uint64_t guest_phys_addr, uint64_t size,
    void *host_address) {
  (void)vm_fd; (void)slot; (void)flags; (void)guest_phys_addr; (void)size; (void)host_address;
  return -ENOSYS;
}
int ckvm_set_tss_addr(int vm_fd, uint64_t address) { (void)vm_fd; (void)address; return -ENOSYS; }
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address) {
  (void)vm_fd; (void)address; return -ENOSYS;
}
int ckvm_create_irqchip(int vm_fd) { (void)vm_fd; return -ENOSYS; }
int ckvm_irq_line(int vm_fd, uint32_t irq, int level) {
  (void)vm_fd; (void)irq; (void)level; return -ENOSYS;
}
int ckvm_create_vcpu(int vm_fd, unsigned long id) { (void)vm_fd; (void)id; return -ENOSYS; }
int ckvm_get_vcpu_mmap_size(int kvm_fd) { (void)kvm_fd; return -ENOSYS; }
int ckvm_get_supported_cpuid(
    int kvm_fd, ckvm_cpuid_entry *entries, uint32_t capacity, uint32_t *count) {
  (void)kvm_fd; (void)entries; (void)capacity; *count = 0; return -ENOSYS;
}
void *ckvm_map_run(int vcpu_fd, size_t size, int *error) {
  (void)vcpu_fd; (void)size; *error = ENOSYS; return NULL;
}
int ckvm_unmap_run(void *run, size_t size) { (void)run; (void)size; return -ENOSYS; }
int ckvm_get_regs(int vcpu_fd, ckvm_regs *regs) { (void)vcpu_fd; (void)regs; return -ENOSYS; }
int ckvm_set_regs(int vcpu_fd, const ckvm_regs *regs) { (void)vcpu_fd; (void)regs; return -ENOSYS; }
int ckvm_get_sregs(int vcpu_fd, ckvm_sregs *s) { (void)vcpu_fd; (void)s; return -ENOSYS; }
int ckvm_set_sregs(int vcpu_fd, const ckvm_sregs *s) { (void)vcpu_fd; (void)s; return -ENOSYS; }
int ckvm_set_cpuid2(int vcpu_fd, const ckvm_cpuid_entry *e, uint32_t n) {
  (void)vcpu_fd; (void)e; (void)n; return -ENOSYS;
}
int ckvm_get_msrs(int vcpu_fd, const uint32_t *i, uint64_t *v, uint32_t n) {
  (void)vcpu_fd; (void)i; (void)v; (void)n; return -ENOSYS;
}
int ckvm_set_msrs(int vcpu_fd, const uint32_t *i, const uint64_t *v, uint32_t n) {
  (void)vcpu_fd; (void)i; (void)v; (void)n; return -ENOSYS;
}
int ckvm_run(int vcpu_fd) { (void)vcpu_fd; return -ENOSYS; }
int ckvm_interrupt(int vcpu_fd, uint32_t vector) { (void)vcpu_fd; (void)vector; return -ENOSYS; }
int ckvm_nmi(int vcpu_fd) { (void)vcpu_fd; return -ENOSYS; }
uint8_t ckvm_run_ready_for_interrupt_injection(const void *run) { (void)run; return 0; }
uint8_t ckvm_run_if_flag(const void *run) { (void)run; return 0; }
void ckvm_run_set_request_interrupt_window(void *run, uint8_t value) { (void)run; (void)value; }
uint64_t ckvm_run_cr8(const void *run) { (void)run; return 0; }
void ckvm_run_set_cr8(void *run, uint64_t value) { (void)run; (void)value; }
uint32_t ckvm_run_exit_reason(const void *run) { (void)run; return 0; }
void ckvm_run_io(const void *run, ckvm_io_exit *out) { (void)run; *out = (ckvm_io_exit){0}; }
void ckvm_run_mmio(const void *run, ckvm_mmio_exit *out) { (void)run; *out = (ckvm_mmio_exit){0}; }
void ckvm_run_set_mmio_data(void *run, uint64_t value) { (void)run; (void)value; }
uint64_t ckvm_run_fail_entry_reason(const void *run, uint32_t *cpu) {
  (void)run; *cpu = 0; return 0;
}
void ckvm_run_internal(const void *run, ckvm_internal_exit *out) {
  (void)run; *out = (ckvm_internal_exit){0};
}
void ckvm_run_hypercall(const void *run, ckvm_hypercall_exit *out) {
  (void)run; *out = (ckvm_hypercall_exit){0};
}
void ckvm_run_set_hypercall_ret(void *run, uint64_t value) { (void)run; (void)value; }
uint32_t ckvm_run_system_event_type(const void *run) { (void)run; return 0; }
uint64_t ckvm_run_hardware_exit_reason(const void *run) { (void)run; return 0; }
void ckvm_run_set_immediate_exit(void *run, uint8_t value) { (void)run; (void)value; }
int ckvm_install_kick_handler(int signal_number) { (void)signal_number; return -ENOSYS; }
int ckvm_unblock_signal(int signal_number) { (void)signal_number; return -ENOSYS; }

#endif
