// Native side of the differential tester: runs snippets on the host CPU.
//
// Layout in the child: the snippet is copied to NX_CODE_BASE (RWX page) and
// followed by an absolute jump to nx_exit_stub. nx_enter_stub (called from C)
// saves the C callee-saved registers, loads RFLAGS and all 16 GPRs from nx_in
// and jumps to the snippet. nx_exit_stub stores all GPRs and RFLAGS into
// nx_out and returns to C. A fault inside the snippet is caught by a signal
// handler (on an alternate stack) that records the signal, the trap number and
// the registers from the ucontext, and resumes at nx_resume.
#define _GNU_SOURCE
#include "cnativeexec.h"

#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define HIDDEN __attribute__((visibility("hidden"))) __attribute__((used))

HIDDEN nx_regs nx_in;
HIDDEN nx_regs nx_out;
HIDDEN uint64_t nx_host_rsp;
HIDDEN uint64_t nx_snippet_ptr = NX_CODE_BASE;
HIDDEN uint64_t nx_scratch[32] __attribute__((aligned(16)));
HIDDEN uint8_t nx_host_fx[512] __attribute__((aligned(16)));

// AT&T syntax. Offsets into nx_regs: gpr[i] at 8*i, rflags at 128, fx at 144.
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl nx_enter_stub\n"
    ".hidden nx_enter_stub\n"
    "nx_enter_stub:\n"
    "  push %rbx\n  push %rbp\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "  mov %rsp, nx_host_rsp(%rip)\n"
    "  fxsave64 nx_host_fx(%rip)\n"
    "  fxrstor64 nx_in+144(%rip)\n"
    "  lea nx_scratch+256(%rip), %rsp\n"
    "  pushq nx_in+128(%rip)\n"
    "  popfq\n"
    "  mov nx_in+8(%rip), %rcx\n"
    "  mov nx_in+16(%rip), %rdx\n"
    "  mov nx_in+24(%rip), %rbx\n"
    "  mov nx_in+40(%rip), %rbp\n"
    "  mov nx_in+48(%rip), %rsi\n"
    "  mov nx_in+56(%rip), %rdi\n"
    "  mov nx_in+64(%rip), %r8\n"
    "  mov nx_in+72(%rip), %r9\n"
    "  mov nx_in+80(%rip), %r10\n"
    "  mov nx_in+88(%rip), %r11\n"
    "  mov nx_in+96(%rip), %r12\n"
    "  mov nx_in+104(%rip), %r13\n"
    "  mov nx_in+112(%rip), %r14\n"
    "  mov nx_in+120(%rip), %r15\n"
    "  mov nx_in+0(%rip), %rax\n"
    "  mov nx_in+32(%rip), %rsp\n"
    "  jmp *nx_snippet_ptr(%rip)\n"
    ".p2align 4\n"
    ".globl nx_exit_stub\n"
    ".hidden nx_exit_stub\n"
    "nx_exit_stub:\n"
    "  mov %rax, nx_out+0(%rip)\n"
    "  mov %rcx, nx_out+8(%rip)\n"
    "  mov %rdx, nx_out+16(%rip)\n"
    "  mov %rbx, nx_out+24(%rip)\n"
    "  mov %rsp, nx_out+32(%rip)\n"
    "  mov %rbp, nx_out+40(%rip)\n"
    "  mov %rsi, nx_out+48(%rip)\n"
    "  mov %rdi, nx_out+56(%rip)\n"
    "  mov %r8, nx_out+64(%rip)\n"
    "  mov %r9, nx_out+72(%rip)\n"
    "  mov %r10, nx_out+80(%rip)\n"
    "  mov %r11, nx_out+88(%rip)\n"
    "  mov %r12, nx_out+96(%rip)\n"
    "  mov %r13, nx_out+104(%rip)\n"
    "  mov %r14, nx_out+112(%rip)\n"
    "  mov %r15, nx_out+120(%rip)\n"
    "  lea nx_scratch+256(%rip), %rsp\n"
    "  pushfq\n"
    "  popq nx_out+128(%rip)\n"
    "  fxsave64 nx_out+144(%rip)\n"
    "  cld\n"
    ".globl nx_resume\n"
    ".hidden nx_resume\n"
    "nx_resume:\n"
    "  fxrstor64 nx_host_fx(%rip)\n"
    "  mov nx_host_rsp(%rip), %rsp\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
    "  ret\n");

void nx_enter_stub(void);
void nx_exit_stub(void);
void nx_resume(void);

// MARK: Memory image

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static const uint64_t edge_values[] = {
    0, 1, ~0ULL, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000ULL,
    0xFFFFFFFFULL, 0x7FFFFFFFFFFFFFFFULL, 0x8000000000000000ULL, 0x100, 0x10000, 0x100000000ULL,
};

static void fill(uint8_t *p, size_t n, uint64_t *s) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t r = splitmix(s);
    uint64_t v;
    switch (r & 7) {
    case 0: v = edge_values[(r >> 8) % (sizeof edge_values / sizeof edge_values[0])]; break;
    case 1: v = (r >> 8) & 0xFF; break;
    default: v = splitmix(s); break;
    }
    memcpy(p + i, &v, 8);
  }
}

void nx_image_init(nx_image *img, uint64_t seed) {
  uint64_t s = seed ^ 0xD1FF7E57ULL;
  fill(img->data, sizeof img->data, &s);
  fill(img->stack, sizeof img->stack, &s);
}

static uint8_t *locate(nx_image *img, uint8_t *data, uint8_t *stack, uint64_t a, uint8_t **pristine) {
  if (a >= NX_DATA_BASE && a + 8 <= NX_DATA_BASE + NX_DATA_SIZE) {
    *pristine = img->data + (a - NX_DATA_BASE);
    return data + (a - NX_DATA_BASE);
  }
  if (a >= NX_STACK_BASE && a + 8 <= NX_STACK_BASE + NX_STACK_SIZE) {
    *pristine = img->stack + (a - NX_STACK_BASE);
    return stack + (a - NX_STACK_BASE);
  }
  return NULL;
}

void nx_case_begin(nx_image *pristine, uint8_t *live_data, uint8_t *live_stack, const nx_case *c,
                   uint64_t saved[NX_MAX_PATCHES]) {
  uint32_t n = c->npatches > NX_MAX_PATCHES ? NX_MAX_PATCHES : c->npatches;
  for (uint32_t k = 0; k < n; k++) {
    uint8_t *p;
    uint8_t *l = locate(pristine, live_data, live_stack, c->patches[k].address, &p);
    saved[k] = 0;
    if (!l) continue;
    memcpy(&saved[k], p, 8);
    memcpy(p, &c->patches[k].value, 8);
    memcpy(l, &c->patches[k].value, 8);
  }
}

static void diff_region(const uint8_t *pre, uint8_t *live, size_t size, uint64_t base,
                        nx_result *r) {
  for (size_t blk = 0; blk < size; blk += 256) {
    if (memcmp(pre + blk, live + blk, 256) == 0) continue;
    for (size_t i = blk; i < blk + 256; i += 8) {
      uint64_t a, b;
      memcpy(&a, pre + i, 8);
      memcpy(&b, live + i, 8);
      if (a == b) continue;
      uint64_t addr = base + i;
      if (r->ndiffs < NX_MAX_DIFFS) {
        r->diffs[r->ndiffs].address = addr;
        r->diffs[r->ndiffs].value = b;
      }
      r->ndiffs++;
      r->diff_hash = (r->diff_hash ^ addr) * 0x100000001B3ULL;
      r->diff_hash = (r->diff_hash ^ b) * 0x100000001B3ULL;
      memcpy(live + i, &a, 8);
    }
  }
}

void nx_case_end(nx_image *pristine, uint8_t *live_data, uint8_t *live_stack, const nx_case *c,
                 const uint64_t saved[NX_MAX_PATCHES], nx_result *r) {
  r->ndiffs = 0;
  r->diff_hash = 0xCBF29CE484222325ULL;
  diff_region(pristine->data, live_data, NX_DATA_SIZE, NX_DATA_BASE, r);
  diff_region(pristine->stack, live_stack, NX_STACK_SIZE, NX_STACK_BASE, r);
  uint32_t n = c->npatches > NX_MAX_PATCHES ? NX_MAX_PATCHES : c->npatches;
  for (uint32_t k = n; k-- > 0;) {
    uint8_t *p;
    uint8_t *l = locate(pristine, live_data, live_stack, c->patches[k].address, &p);
    if (!l) continue;
    memcpy(p, &saved[k], 8);
    memcpy(l, &saved[k], 8);
  }
}

int nx_native_exit_sequence(uint8_t *out, int cap) {
  if (cap < 14) return 0;
  uint64_t target = (uint64_t)(uintptr_t)&nx_exit_stub;
  out[0] = 0xFF;  // jmp qword [rip+0]
  out[1] = 0x25;
  memset(out + 2, 0, 4);
  memcpy(out + 6, &target, 8);
  return 14;
}

// MARK: Child

enum { CHILD_DONE = 0, CHILD_REFORK = 10, CHILD_SETUP = 11, CHILD_CRASH = 99 };

typedef struct shared_area {
  volatile int32_t progress;  // results [start, progress) are written
  int32_t pad;
  char error[256];
  nx_result results[];
} shared_area;

#define CHUNK 2048

static shared_area *shm;
static nx_image image;
static uint64_t image_seed_loaded = 0;
static int image_valid = 0;
static char last_error[512];
static uint64_t fork_count;

static volatile sig_atomic_t faulted;
static int refork_on_fault = 0;
void nx_set_refork_on_fault(int on) { refork_on_fault = on; }
static nx_result *current_result;

static void on_fault(int sig, siginfo_t *si, void *ctx) {
  ucontext_t *uc = (ucontext_t *)ctx;
  greg_t *g = uc->uc_mcontext.gregs;
  uint64_t rip = (uint64_t)g[REG_RIP];
  if (rip < NX_CODE_BASE || rip >= NX_CODE_BASE + NX_CODE_SIZE) {
    // Not the snippet: the runner itself crashed.
    _exit(CHILD_CRASH);
  }
  nx_result *r = current_result;
  r->signo = sig;
  r->vector = (int32_t)g[REG_TRAPNO];
  r->error_code = (uint64_t)g[REG_ERR];
  r->fault_addr = (sig == SIGSEGV || sig == SIGBUS) ? (uint64_t)(uintptr_t)si->si_addr : 0;
  r->fault_rip = rip;
  static const int order[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
                                REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
                                REG_R12, REG_R13, REG_R14, REG_R15};
  for (int i = 0; i < 16; i++) r->out.gpr[i] = (uint64_t)g[order[i]];
  r->out.rflags = (uint64_t)g[REG_EFL];
  if (uc->uc_mcontext.fpregs) memcpy(r->out.fx, uc->uc_mcontext.fpregs, 512);
  faulted = 1;
  // Resume in nx_resume with DF, TF and AC clear.
  g[REG_RIP] = (greg_t)(uintptr_t)&nx_resume;
  g[REG_EFL] &= ~(greg_t)((1 << 10) | (1 << 8) | (1 << 18));
}

static void *map_fixed(uint64_t addr, uint64_t size, int prot) {
  void *p = mmap((void *)(uintptr_t)addr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                 -1, 0);
  if (p == MAP_FAILED || (uint64_t)(uintptr_t)p != addr) return NULL;
  return p;
}

static int child_main(const nx_case *cases, int start, int n) {
  uint8_t *code = map_fixed(NX_CODE_BASE, NX_CODE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC);
  uint8_t *data = map_fixed(NX_DATA_BASE, NX_DATA_SIZE, PROT_READ | PROT_WRITE);
  uint8_t *stack = map_fixed(NX_STACK_BASE, NX_STACK_SIZE, PROT_READ | PROT_WRITE);
  if (!code || !data || !stack) {
    snprintf(shm->error, sizeof shm->error, "mmap at fixed addresses failed (errno %d)", errno);
    return CHILD_SETUP;
  }
  static uint8_t altstack[65536] __attribute__((aligned(64)));
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) {
    snprintf(shm->error, sizeof shm->error, "sigaltstack failed (errno %d)", errno);
    return CHILD_SETUP;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);

  memcpy(data, image.data, NX_DATA_SIZE);
  memcpy(stack, image.stack, NX_STACK_SIZE);
  uint8_t exitseq[16];
  int exitlen = nx_native_exit_sequence(exitseq, sizeof exitseq);
  uint64_t saved[NX_MAX_PATCHES];

  for (int i = start; i < n; i++) {
    const nx_case *c = &cases[i];
    nx_result *r = &shm->results[i];
    memset(r, 0, offsetof(nx_result, diffs));
    uint32_t len = c->code_len > NX_MAX_CODE ? NX_MAX_CODE : c->code_len;
    memcpy(code, c->code, len);
    memcpy(code + len, exitseq, exitlen);
    nx_case_begin(&image, data, stack, c, saved);
    memcpy(&nx_in, &c->in, sizeof nx_in);
    nx_in.rflags = (c->in.rflags & NX_FLAGS_SETTABLE) | 2;
    faulted = 0;
    current_result = r;
    nx_enter_stub();
    if (faulted) {
      r->status = NX_EXCEPTION;
    } else {
      r->status = NX_OK;
      memcpy(&r->out, &nx_out, sizeof nx_out);
    }
    nx_case_end(&image, data, stack, c, saved, r);
    __atomic_store_n(&shm->progress, i + 1, __ATOMIC_RELEASE);
    // A fault stopped the access that caused it, so the child's own memory is
    // intact; re-forking here would only cost time. A wild store that
    // succeeds would not fault at all; each batch gets a fresh child anyway.
    if (faulted && refork_on_fault) return CHILD_REFORK;
  }
  return CHILD_DONE;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *nx_last_error(void) { return last_error; }
uint64_t nx_forks(void) { return fork_count; }

static int run_chunk(const nx_case *cases, nx_result *results, int n, int timeout_ms) {
  int start = 0;
  while (start < n) {
    shm->progress = start;
    shm->error[0] = 0;
    fork_count++;
    pid_t pid = fork();
    if (pid < 0) {
      snprintf(last_error, sizeof last_error, "fork failed (errno %d)", errno);
      return -1;
    }
    if (pid == 0) _exit(child_main(cases, start, n));
    int last = start;
    uint64_t since = now_ms();
    int status = 0;
    int killed = 0;
    for (;;) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      if (w < 0 && errno != EINTR) {
        snprintf(last_error, sizeof last_error, "waitpid failed (errno %d)", errno);
        return -1;
      }
      int p = __atomic_load_n(&shm->progress, __ATOMIC_ACQUIRE);
      uint64_t t = now_ms();
      if (p != last) {
        last = p;
        since = t;
      } else if (t - since > (uint64_t)timeout_ms) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        killed = 1;
        break;
      }
      struct timespec d = {0, 50000};
      nanosleep(&d, NULL);
    }
    int p = __atomic_load_n(&shm->progress, __ATOMIC_ACQUIRE);
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SETUP) {
      snprintf(last_error, sizeof last_error, "native child setup: %s", shm->error);
      return -1;
    }
    if (!killed && WIFEXITED(status) &&
        (WEXITSTATUS(status) == CHILD_DONE || WEXITSTATUS(status) == CHILD_REFORK)) {
      start = p;
      continue;
    }
    // The child hung or died inside case p.
    if (p < n) {
      memset(&shm->results[p], 0, sizeof(nx_result));
      shm->results[p].status = killed ? NX_TIMEOUT : NX_CRASH;
      shm->results[p].signo = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
    }
    start = p + 1;
  }
  memcpy(results, shm->results, sizeof(nx_result) * (size_t)n);
  return 0;
}

int nx_run_batch(const nx_case *cases, nx_result *results, int n, uint64_t image_seed,
                 int timeout_ms) {
  if (!shm) {
    size_t bytes = sizeof(shared_area) + sizeof(nx_result) * CHUNK;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      snprintf(last_error, sizeof last_error, "shared mmap failed (errno %d)", errno);
      return -1;
    }
    shm = p;
  }
  if (!image_valid || image_seed_loaded != image_seed) {
    nx_image_init(&image, image_seed);
    image_seed_loaded = image_seed;
    image_valid = 1;
  }
  if (timeout_ms <= 0) timeout_ms = 2000;
  for (int off = 0; off < n; off += CHUNK) {
    int m = n - off < CHUNK ? n - off : CHUNK;
    if (run_chunk(cases + off, results + off, m, timeout_ms) != 0) return -1;
  }
  return 0;
}
