// CNativeExec: runs x86-64 machine-code snippets natively on the host, each
// batch in a forked child, and reports the final register state and memory
// changes (or the exception that stopped the snippet). See docs/DIFFTEST.md.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Fixed guest/host virtual layout (identical in the native child and in the
// interpreter's page tables).
#define NX_CODE_BASE 0x10000000ULL  // snippet starts here
#define NX_CODE_SIZE 0x1000ULL
#define NX_DATA_BASE 0x20000000ULL
#define NX_DATA_SIZE 0x10000ULL  // 64 KiB
#define NX_STACK_BASE 0x30000000ULL
#define NX_STACK_SIZE 0x1000ULL
#define NX_MAX_CODE 240  // bytes of snippet (the exit sequence follows)
#define NX_MAX_PATCHES 16
#define NX_MAX_DIFFS 48

// Register block. gpr[] is in encoding order: RAX RCX RDX RBX RSP RBP RSI RDI R8..R15.
typedef struct nx_regs {
  uint64_t gpr[16];
  uint64_t rflags;
  uint64_t pad;
  // FXSAVE image (x87/MMX registers, FCW/FSW/FTW, MXCSR, XMM0-15): loaded with
  // FXRSTOR before the snippet, stored with FXSAVE after it (or taken from the
  // signal context at a fault).
  uint8_t fx[512] __attribute__((aligned(16)));
} nx_regs;

// An 8-byte value stored at a virtual address inside the data or stack region
// before the case runs (addresses need not be aligned).
typedef struct nx_patch {
  uint64_t address;
  uint64_t value;
} nx_patch;

typedef struct nx_case {
  nx_regs in;
  uint32_t code_len;
  uint32_t npatches;
  nx_patch patches[NX_MAX_PATCHES];
  uint8_t code[NX_MAX_CODE];
} nx_case;

enum {
  NX_OK = 0,         // snippet ran to its end; `out` holds the final registers
  NX_EXCEPTION = 1,  // snippet faulted; `out` holds the registers at the fault
  NX_TIMEOUT = 2,    // watchdog killed the child
  NX_CRASH = 3,      // the child died for another reason (runner bug)
  NX_SETUP = 4,      // the child could not map its regions
};

typedef struct nx_diff {
  uint64_t address;  // 8-byte aligned virtual address
  uint64_t value;    // final qword
} nx_diff;

typedef struct nx_result {
  int32_t status;
  int32_t signo;        // SIGSEGV/SIGFPE/SIGILL/SIGBUS/SIGTRAP
  int32_t vector;       // trap number from the ucontext (0 #DE, 6 #UD, 13 #GP, 14 #PF...)
  int32_t ndiffs;       // total changed qwords (may exceed NX_MAX_DIFFS)
  uint64_t fault_addr;  // si_addr (SIGSEGV/SIGBUS)
  uint64_t fault_rip;
  uint64_t error_code;
  uint64_t diff_hash;   // hash over every (address, value) change
  nx_regs out;
  nx_diff diffs[NX_MAX_DIFFS];
} nx_result;

// Initial memory image (data region + stack page), derived from a seed.
typedef struct nx_image {
  uint8_t data[NX_DATA_SIZE];
  uint8_t stack[NX_STACK_SIZE];
} nx_image;

// RFLAGS bits a test may choose: CF PF AF ZF SF DF OF (plus the fixed bit 1).
#define NX_FLAGS_SETTABLE 0x0CD5ULL
// RFLAGS bits that are compared: the status flags, DF and bit 1.
#define NX_FLAGS_COMPARED 0x0CD7ULL

void nx_image_init(nx_image *img, uint64_t seed);

// Applies the case's patches to `live` (the memory the code will see) and to
// `pristine` (the reference copy); saves what they overwrote in `saved`.
void nx_case_begin(nx_image *pristine, uint8_t *live_data, uint8_t *live_stack,
                   const nx_case *c, uint64_t saved[NX_MAX_PATCHES]);
// Records every qword of `live` that differs from `pristine` in r, then
// restores both to the unpatched pristine image.
void nx_case_end(nx_image *pristine, uint8_t *live_data, uint8_t *live_stack,
                 const nx_case *c, const uint64_t saved[NX_MAX_PATCHES], nx_result *r);

// Runs n cases natively, each in turn, in forked children (one child per
// batch; a fresh child after a hang or a crash, and optionally after any fault).
// Returns 0, or -1 with a message in nx_last_error().
int nx_run_batch(const nx_case *cases, nx_result *results, int n, uint64_t image_seed,
                 int timeout_ms);
const char *nx_last_error(void);
// Start a fresh child after every faulting case (off by default: slower).
void nx_set_refork_on_fault(int on);
// Number of child processes forked so far.
uint64_t nx_forks(void);

// Bytes that end a snippet natively (an absolute jump to the epilogue); the
// interpreter appends its own exit instead.
int nx_native_exit_sequence(uint8_t *out, int cap);

#ifdef __cplusplus
}
#endif
