// exits-c: a minimal C VMM, the yardstick for the Swift KVM engine's exit cost.
//
// Loads a plain ELF64 guest (Guests/build/exits64.elf), enters it directly in
// long mode (low 4 GiB identity-mapped with 2 MiB pages, flat 64-bit CS,
// interrupts off), and serves the exits the exits guest makes:
//   port 0x3f8..0x3ff  16550 UART: output printed, LSR always "transmitter empty"
//   port 0x80          round trip: IN returns the last OUT value
//   MMIO 0xD0000000    round trip: a read returns the last written value
//   port 0xf4          isa-debug-exit: the run ends, status (v << 1) | 1
// It reports the time from the first KVM_RUN to the exit at 0xf4 divided by
// the number of KVM_RUN returns, measured with clock_gettime(CLOCK_MONOTONIC).
//
// Usage: exits-c GUEST.elf [MEMORY_MiB]
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GDT_ADDR 0x1000
#define PML4_ADDR 0x2000  // PML4, PDPT, then 4 page directories: 0x2000..0x7fff
#define MMIO_BASE 0xD0000000ull

static void die(const char *what) {
  fprintf(stderr, "exits-c: %s: %s\n", what, strerror(errno));
  exit(70);
}

static void fail(const char *msg) {
  fprintf(stderr, "exits-c: %s\n", msg);
  exit(70);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// Copies the PT_LOAD segments to their physical addresses; returns the entry.
static uint64_t load_elf64(const char *path, uint8_t *ram, uint64_t ram_size) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die(path);
  struct stat st;
  if (fstat(fd, &st) < 0) die("fstat");
  size_t size = (size_t)st.st_size;
  if (size < sizeof(Elf64_Ehdr)) fail("guest image too small for an ELF header");
  uint8_t *img = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (img == MAP_FAILED) die("mmap guest image");
  close(fd);

  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_machine != EM_X86_64)
    fail("guest image is not an x86-64 ELF64 file");
  if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > size ||
      (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size - eh->e_phoff)
    fail("bad ELF program header table");
  const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD) continue;
    uint64_t pa = ph[i].p_paddr, fsz = ph[i].p_filesz, msz = ph[i].p_memsz;
    if (fsz > msz || ph[i].p_offset > size || fsz > size - ph[i].p_offset)
      fail("ELF segment outside the file");
    if (pa >= ram_size || msz > ram_size - pa) fail("ELF segment outside guest RAM");
    memcpy(ram + pa, img + ph[i].p_offset, fsz);
    memset(ram + pa + fsz, 0, msz - fsz);
  }
  uint64_t entry = eh->e_entry;
  munmap(img, size);
  return entry;
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code64) {
  memset(s, 0, sizeof(*s));
  s->base = 0;
  s->limit = 0xffffffff;
  s->selector = sel;
  s->type = type;
  s->present = 1;
  s->s = 1;
  s->g = 1;
  s->l = code64 ? 1 : 0;
  s->db = code64 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s GUEST.elf [MEMORY_MiB]\n", argv[0]);
    return 64;
  }
  uint64_t ram_size = (argc > 2 ? strtoull(argv[2], NULL, 10) : 128) << 20;
  if (ram_size < (2u << 20) || ram_size > 0xC0000000ull) fail("memory must be 2..3072 MiB");

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  if (ioctl(kvm, KVM_GET_API_VERSION, 0) != 12) fail("KVM API version is not 12");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  uint8_t *ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED) die("mmap guest RAM");
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = ram_size,
      .userspace_addr = (uint64_t)(uintptr_t)ram};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  // Real mode on VT-x needs these; we enter long mode directly, but set them as the
  // Swift engine does so both VMMs configure KVM alike.
  (void)ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
  uint64_t idmap = 0xfffbc000ull;
  (void)ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap);

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size <= 0) die("KVM_GET_VCPU_MMAP_SIZE");
  struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");

  // The host's supported CPUID, so the guest sees a normal long-mode CPU.
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(struct kvm_cpuid_entry2));
  if (!cpuid) fail("out of memory");
  cpuid->nent = 256;
  if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
  free(cpuid);

  uint64_t entry = load_elf64(argv[1], ram, ram_size);

  // Identity map of the low 4 GiB with 2 MiB pages.
  uint64_t *pml4 = (uint64_t *)(ram + PML4_ADDR);
  uint64_t *pdpt = (uint64_t *)(ram + PML4_ADDR + 0x1000);
  uint64_t *pd = (uint64_t *)(ram + PML4_ADDR + 0x2000);
  pml4[0] = (PML4_ADDR + 0x1000) | 3;
  for (uint64_t i = 0; i < 4; i++) pdpt[i] = (PML4_ADDR + 0x2000 + i * 0x1000) | 3;
  for (uint64_t i = 0; i < 2048; i++) pd[i] = (i << 21) | 0x83;  // P | RW | PS
  uint64_t *gdt = (uint64_t *)(ram + GDT_ADDR);
  gdt[0] = 0;
  gdt[1] = 0x00af9b000000ffffull;  // 64-bit code
  gdt[2] = 0x00cf93000000ffffull;  // data

  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  set_seg(&sregs.cs, 8, 11, 1);
  set_seg(&sregs.ds, 16, 3, 0);
  sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
  sregs.gdt.base = GDT_ADDR;
  sregs.gdt.limit = 23;
  sregs.cr0 = 0x80050033;  // PG | AM | WP | NE | ET | MP | PE
  sregs.cr3 = PML4_ADDR;
  sregs.cr4 = 0x20;         // PAE
  sregs.efer = 0x500;       // LME | LMA
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof(regs));
  regs.rip = entry;
  regs.rsp = 0x80000;
  regs.rflags = 2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  uint32_t port80 = 0;
  uint64_t mmio_value = 0;
  uint64_t exits = 0, pio = 0, mmio = 0;
  int status = -1;
  uint64_t t0 = now_ns();
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("KVM_RUN");
    }
    exits++;
    if (run->exit_reason == KVM_EXIT_IO) {
      pio++;
      uint8_t *data = (uint8_t *)run + run->io.data_offset;
      uint16_t port = run->io.port;
      for (uint32_t n = 0; n < run->io.count; n++, data += run->io.size) {
        uint32_t v = 0;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
          memcpy(&v, data, run->io.size);
          if (port == 0x3f8) fputc((int)(v & 0xff), stdout);
          else if (port == 0x80) port80 = v;
          else if (port == 0xf4) status = (int)((v << 1) | 1);
        } else {
          if (port == 0x3fd) v = 0x60;  // LSR: THR empty, transmitter empty
          else if (port == 0x80) v = port80;
          else if (port >= 0x3f8 && port <= 0x3ff) v = 0;
          else v = 0xffffffff;
          memcpy(data, &v, run->io.size);
        }
      }
      if (status >= 0) break;
    } else if (run->exit_reason == KVM_EXIT_MMIO) {
      mmio++;
      if (run->mmio.phys_addr < MMIO_BASE || run->mmio.phys_addr >= MMIO_BASE + 0x1000) {
        fprintf(stderr, "exits-c: stray MMIO at 0x%llx\n", (unsigned long long)run->mmio.phys_addr);
      }
      if (run->mmio.is_write) memcpy(&mmio_value, run->mmio.data, run->mmio.len);
      else memcpy(run->mmio.data, &mmio_value, run->mmio.len);
    } else if (run->exit_reason == KVM_EXIT_HLT) {
      fprintf(stderr, "exits-c: guest halted before the exit port\n");
      break;
    } else if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
      fail("guest triple-faulted");
    } else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
      fprintf(stderr, "exits-c: KVM internal error, suberror %u\n", run->internal.suberror);
      return 70;
    } else {
      fprintf(stderr, "exits-c: unexpected exit reason %u\n", run->exit_reason);
      return 70;
    }
  }
  uint64_t t1 = now_ns();
  fflush(stdout);
  double ns = (double)(t1 - t0);
  printf("RESULT exits-c exits=%llu pio=%llu mmio=%llu ns=%.0f ns_per_exit=%.1f status=%d\n",
         (unsigned long long)exits, (unsigned long long)pio, (unsigned long long)mmio, ns,
         exits ? ns / (double)exits : 0.0, status);
  return status >= 0 ? 0 : 1;
}
