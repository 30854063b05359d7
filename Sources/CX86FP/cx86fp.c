// See include/cx86fp.h. Each operation is one inline-assembly block that
// saves the host MXCSR / x87 control word, loads the guest's, runs the single
// guest instruction on copies of the guest operands, reads the resulting flags
// and restores the host state, so nothing can be reordered around it.
#include "cx86fp.h"

#include <string.h>

#if defined(__x86_64__)

#define SSE_PRE                                  \
  "stmxcsr %[h]\n\t"                             \
  "movdqu (%[d]), %%xmm0\n\t"                    \
  "movdqu (%[s]), %%xmm1\n\t"                    \
  "ldmxcsr %[m]\n\t"
#define SSE_POST                                 \
  "\n\tstmxcsr %[m]\n\t"                         \
  "ldmxcsr %[h]\n\t"                             \
  "movdqu %%xmm0, (%[d])\n\t"
#define SSE_OPS [h] "=m"(host), [m] "+m"(m) : [d] "r"(d), [s] "r"(s), [g] "r"(gpr)
#define SSE_CLOB "rax", "xmm0", "xmm1", "memory", "cc"

#define SSE(INSN) \
  __asm__ volatile(SSE_PRE INSN SSE_POST : SSE_OPS : SSE_CLOB); \
  break

#define CMP4(P)                                                 \
  switch (op) {                                                 \
  case XF_CMPSS: SSE("cmpss $" #P ", %%xmm1, %%xmm0");          \
  case XF_CMPSD: SSE("cmpsd $" #P ", %%xmm1, %%xmm0");          \
  case XF_CMPPS: SSE("cmpps $" #P ", %%xmm1, %%xmm0");          \
  default: SSE("cmppd $" #P ", %%xmm1, %%xmm0");                \
  }                                                             \
  break

#define ROUND4(I)                                               \
  switch (op) {                                                 \
  case XF_ROUNDSS: SSE("roundss $" #I ", %%xmm1, %%xmm0");      \
  case XF_ROUNDSD: SSE("roundsd $" #I ", %%xmm1, %%xmm0");      \
  case XF_ROUNDPS: SSE("roundps $" #I ", %%xmm1, %%xmm0");      \
  default: SSE("roundpd $" #I ", %%xmm1, %%xmm0");              \
  }                                                             \
  break

static void comi(int op, uint32_t *mp, void *d, const void *s, uint64_t *gpr) {
  uint32_t host, m = *mp;
  uint8_t z, p, c;
#define COMI(INSN)                                                                        \
  __asm__ volatile("stmxcsr %[h]\n\tmovdqu (%[d]), %%xmm0\n\tmovdqu (%[s]), %%xmm1\n\t" \
                   "ldmxcsr %[m]\n\t" INSN " %%xmm1, %%xmm0\n\tsetz %[z]\n\tsetp %[p]\n\t"  \
                   "setc %[c]\n\tstmxcsr %[m]\n\tldmxcsr %[h]"                              \
                   : [h] "=m"(host), [m] "+m"(m), [z] "=r"(z), [p] "=r"(p), [c] "=r"(c)      \
                   : [d] "r"(d), [s] "r"(s)                                                \
                   : "xmm0", "xmm1", "memory", "cc");                                      \
  break
  switch (op) {
  case XF_COMISS: COMI("comiss");
  case XF_UCOMISS: COMI("ucomiss");
  case XF_COMISD: COMI("comisd");
  default: COMI("ucomisd");
  }
  *gpr = (uint64_t)(z ? 0x40 : 0) | (p ? 0x04 : 0) | (c ? 0x01 : 0);
  *mp = m;
}

uint32_t xf_sse(int op, uint32_t mxcsr, void *d, const void *s, uint64_t *gpr, int imm) {
  uint32_t host;
  uint32_t m = mxcsr | 0x1F80;  // all exceptions masked on the host
  uint64_t dummy = 0;
  if (!gpr) gpr = &dummy;
  switch (op) {
  case XF_ADDSS: SSE("addss %%xmm1, %%xmm0");
  case XF_ADDSD: SSE("addsd %%xmm1, %%xmm0");
  case XF_ADDPS: SSE("addps %%xmm1, %%xmm0");
  case XF_ADDPD: SSE("addpd %%xmm1, %%xmm0");
  case XF_SUBSS: SSE("subss %%xmm1, %%xmm0");
  case XF_SUBSD: SSE("subsd %%xmm1, %%xmm0");
  case XF_SUBPS: SSE("subps %%xmm1, %%xmm0");
  case XF_SUBPD: SSE("subpd %%xmm1, %%xmm0");
  case XF_MULSS: SSE("mulss %%xmm1, %%xmm0");
  case XF_MULSD: SSE("mulsd %%xmm1, %%xmm0");
  case XF_MULPS: SSE("mulps %%xmm1, %%xmm0");
  case XF_MULPD: SSE("mulpd %%xmm1, %%xmm0");
  case XF_DIVSS: SSE("divss %%xmm1, %%xmm0");
  case XF_DIVSD: SSE("divsd %%xmm1, %%xmm0");
  case XF_DIVPS: SSE("divps %%xmm1, %%xmm0");
  case XF_DIVPD: SSE("divpd %%xmm1, %%xmm0");
  case XF_MINSS: SSE("minss %%xmm1, %%xmm0");
  case XF_MINSD: SSE("minsd %%xmm1, %%xmm0");
  case XF_MINPS: SSE("minps %%xmm1, %%xmm0");
  case XF_MINPD: SSE("minpd %%xmm1, %%xmm0");
  case XF_MAXSS: SSE("maxss %%xmm1, %%xmm0");
  case XF_MAXSD: SSE("maxsd %%xmm1, %%xmm0");
  case XF_MAXPS: SSE("maxps %%xmm1, %%xmm0");
  case XF_MAXPD: SSE("maxpd %%xmm1, %%xmm0");
  case XF_SQRTSS: SSE("sqrtss %%xmm1, %%xmm0");
  case XF_SQRTSD: SSE("sqrtsd %%xmm1, %%xmm0");
  case XF_SQRTPS: SSE("sqrtps %%xmm1, %%xmm0");
  case XF_SQRTPD: SSE("sqrtpd %%xmm1, %%xmm0");
  case XF_RCPSS: SSE("rcpss %%xmm1, %%xmm0");
  case XF_RCPPS: SSE("rcpps %%xmm1, %%xmm0");
  case XF_RSQRTSS: SSE("rsqrtss %%xmm1, %%xmm0");
  case XF_RSQRTPS: SSE("rsqrtps %%xmm1, %%xmm0");
  case XF_CVTSS2SD: SSE("cvtss2sd %%xmm1, %%xmm0");
  case XF_CVTSD2SS: SSE("cvtsd2ss %%xmm1, %%xmm0");
  case XF_CVTPS2PD: SSE("cvtps2pd %%xmm1, %%xmm0");
  case XF_CVTPD2PS: SSE("cvtpd2ps %%xmm1, %%xmm0");
  case XF_CVTDQ2PS: SSE("cvtdq2ps %%xmm1, %%xmm0");
  case XF_CVTPS2DQ: SSE("cvtps2dq %%xmm1, %%xmm0");
  case XF_CVTTPS2DQ: SSE("cvttps2dq %%xmm1, %%xmm0");
  case XF_CVTDQ2PD: SSE("cvtdq2pd %%xmm1, %%xmm0");
  case XF_CVTPD2DQ: SSE("cvtpd2dq %%xmm1, %%xmm0");
  case XF_CVTTPD2DQ: SSE("cvttpd2dq %%xmm1, %%xmm0");
  case XF_CMPSS: case XF_CMPSD: case XF_CMPPS: case XF_CMPPD:
    switch (imm & 7) {
    case 0: CMP4(0);
    case 1: CMP4(1);
    case 2: CMP4(2);
    case 3: CMP4(3);
    case 4: CMP4(4);
    case 5: CMP4(5);
    case 6: CMP4(6);
    default: CMP4(7);
    }
    break;
  case XF_COMISS: case XF_UCOMISS: case XF_COMISD: case XF_UCOMISD:
    comi(op, &m, d, s, gpr);
    break;
  case XF_CVTSI2SS32: SSE("cvtsi2ssl (%[g]), %%xmm0");
  case XF_CVTSI2SS64: SSE("cvtsi2ssq (%[g]), %%xmm0");
  case XF_CVTSI2SD32: SSE("cvtsi2sdl (%[g]), %%xmm0");
  case XF_CVTSI2SD64: SSE("cvtsi2sdq (%[g]), %%xmm0");
  case XF_CVTSS2SI32: SSE("cvtss2si %%xmm1, %%eax\n\tmovq %%rax, (%[g])");
  case XF_CVTSS2SI64: SSE("cvtss2si %%xmm1, %%rax\n\tmovq %%rax, (%[g])");
  case XF_CVTTSS2SI32: SSE("cvttss2si %%xmm1, %%eax\n\tmovq %%rax, (%[g])");
  case XF_CVTTSS2SI64: SSE("cvttss2si %%xmm1, %%rax\n\tmovq %%rax, (%[g])");
  case XF_CVTSD2SI32: SSE("cvtsd2si %%xmm1, %%eax\n\tmovq %%rax, (%[g])");
  case XF_CVTSD2SI64: SSE("cvtsd2si %%xmm1, %%rax\n\tmovq %%rax, (%[g])");
  case XF_CVTTSD2SI32: SSE("cvttsd2si %%xmm1, %%eax\n\tmovq %%rax, (%[g])");
  case XF_CVTTSD2SI64: SSE("cvttsd2si %%xmm1, %%rax\n\tmovq %%rax, (%[g])");
  case XF_ADDSUBPS: SSE("addsubps %%xmm1, %%xmm0");
  case XF_ADDSUBPD: SSE("addsubpd %%xmm1, %%xmm0");
  case XF_ROUNDSS: case XF_ROUNDSD: case XF_ROUNDPS: case XF_ROUNDPD:
    switch (imm & 15) {
    case 0: ROUND4(0);
    case 1: ROUND4(1);
    case 2: ROUND4(2);
    case 3: ROUND4(3);
    case 4: ROUND4(4);
    case 5: ROUND4(5);
    case 6: ROUND4(6);
    case 7: ROUND4(7);
    case 8: ROUND4(8);
    case 9: ROUND4(9);
    case 10: ROUND4(10);
    case 11: ROUND4(11);
    case 12: ROUND4(12);
    case 13: ROUND4(13);
    case 14: ROUND4(14);
    default: ROUND4(15);
    }
    break;
  default: break;
  }
  return m;
}

// MARK: x87

// The host x87 starts from an environment with the guest control word, the
// guest's condition codes, no flags and an empty stack, so condition codes an
// instruction leaves alone keep the guest's values and unmasked overflow /
// underflow give the hardware's scaled results. Right after the guest
// instruction MID reads the status word, clears the exceptions (nothing can
// trap) and masks everything for the stores that follow.
#define X87_PRE "fnstcw %[h]\n\tfninit\n\t"
#define MID "\n\tfnstsw %[sw]\n\tfnclex\n\tfldcw %[mk]\n\t"
#define X87_POST "\n\tfnclex\n\tfldcw %[h]"
#define X87_OPS                                                                               \
  [h] "=m"(host), [sw] "=m"(sw)                                                               \
      : [e0] "m"(env0), [e1] "m"(env1), [e2] "m"(env2), [mk] "m"(mk), [a] "r"(a), [b] "r"(b), \
        [x] "r"(aux)
#define X87_CLOB "memory", "cc", "rax", "st", "st(1)", "st(2)", "st(3)"
#define X87(BODY) \
  __asm__ volatile(X87_PRE BODY X87_POST : X87_OPS : X87_CLOB); \
  break
// a OP b with both loaded: ST0 = a, ST1 = b.
// Operands are loaded first (FNINIT state), then FLDENV installs the guest
// control word and condition codes with TOP and tags matching the loads.
#define L1 "fldt (%[a])\n\tfldenv %[e1]\n\t"
#define L2 "fldt (%[b])\n\tfldt (%[a])\n\tfldenv %[e2]\n\t"
#define L0 "fldenv %[e0]\n\t"
#define BIN(INSN) X87(L2 INSN MID "fstpt (%[a])\n\tfstp %%st(0)")
#define UN(INSN) X87(L1 INSN MID "fstpt (%[a])")
// ST0 = a OP memory operand at aux.
#define MEM(INSN) X87(L1 INSN " (%[x])" MID "fstpt (%[a])")
#define MEMROW(S)                                           \
  switch (r) {                                              \
  case 0: MEM("fadd" S);                                    \
  case 1: MEM("fmul" S);                                    \
  case 2: case 3: MEM("fcom" S);                            \
  case 4: MEM("fsub" S);                                    \
  case 5: MEM("fsubr" S);                                   \
  case 6: MEM("fdiv" S);                                    \
  default: MEM("fdivr" S);                                  \
  }                                                         \
  break

uint16_t xf_x87(int op, uint16_t guest_cw, uint16_t guest_sw, uint8_t *a, uint8_t *b,
               uint64_t *aux, int imm) {
  uint16_t host = 0, sw = 0;
  uint16_t mk = guest_cw | 0x3F;
  typedef struct {
    uint32_t cw, sw, tw, ip, cs, dp, ds;
  } env_t;
  uint32_t cc = guest_sw & 0x4700;
  env_t env0 = {guest_cw, cc, 0xFFFF, 0, 0, 0, 0};
  env_t env1 = {guest_cw, cc | (7u << 11), 0x3FFF, 0, 0, 0, 0};
  env_t env2 = {guest_cw, cc | (6u << 11), 0x0FFF, 0, 0, 0, 0};
  uint8_t z = 0, p = 0, c = 0;
  uint8_t scratch[16] = {0};
  uint64_t dummy = 0;
  if (!a) a = scratch;
  if (!b) b = scratch;
  if (!aux) aux = &dummy;
  if (op >= XF87_MEMOP && op < XF87_MEMOP + 32) {
    int r = (op - XF87_MEMOP) & 7;
    switch ((op - XF87_MEMOP) >> 3) {
    case 0: MEMROW("s");  // m32fp
    case 1: MEMROW("l");  // m64fp
    case 2:               // m16int
      switch (r) {
      case 0: MEM("fiadds");
      case 1: MEM("fimuls");
      case 2: case 3: MEM("ficoms");
      case 4: MEM("fisubs");
      case 5: MEM("fisubrs");
      case 6: MEM("fidivs");
      default: MEM("fidivrs");
      }
      break;
    default:  // m32int
      switch (r) {
      case 0: MEM("fiaddl");
      case 1: MEM("fimull");
      case 2: case 3: MEM("ficoml");
      case 4: MEM("fisubl");
      case 5: MEM("fisubrl");
      case 6: MEM("fidivl");
      default: MEM("fidivrl");
      }
      break;
    }
    return sw & 0x477F;
  }
  switch (op) {
  case XF87_ADD: BIN("fadd %%st(1), %%st");
  case XF87_SUB: BIN("fsub %%st(1), %%st");
  case XF87_SUBR: BIN("fsubr %%st(1), %%st");
  case XF87_MUL: BIN("fmul %%st(1), %%st");
  case XF87_DIV: BIN("fdiv %%st(1), %%st");
  case XF87_DIVR: BIN("fdivr %%st(1), %%st");
  case XF87_SQRT: UN("fsqrt");
  case XF87_ABS: UN("fabs");
  case XF87_CHS: UN("fchs");
  case XF87_RNDINT: UN("frndint");
  case XF87_F2XM1: UN("f2xm1");
  case XF87_SIN: UN("fsin");
  case XF87_COS: UN("fcos");
  case XF87_SCALE: BIN("fscale");
  case XF87_PREM: BIN("fprem");
  case XF87_PREM1: BIN("fprem1");
  case XF87_XTRACT: X87(L1 "fxtract" MID "fstpt (%[a])\n\tfstpt (%[b])");
  case XF87_YL2X: X87(L2 "fyl2x" MID "fstpt (%[a])");
  case XF87_YL2XP1: X87(L2 "fyl2xp1" MID "fstpt (%[a])");
  case XF87_PATAN: X87(L2 "fpatan" MID "fstpt (%[a])");
  case XF87_PTAN:
    X87(L1 "fptan" MID "fnstsw %%ax\n\ttest $0x400, %%ax\n\tjnz 1f\n\t"
        "fstpt (%[b])\n1:\n\tfstpt (%[a])");
  case XF87_SINCOS:
    X87(L1 "fsincos" MID "fnstsw %%ax\n\ttest $0x400, %%ax\n\tjnz 1f\n\t"
        "fstpt (%[b])\n1:\n\tfstpt (%[a])");
  case XF87_COM: X87(L2 "fcom %%st(1)" MID "fstp %%st(0)\n\tfstp %%st(0)");
  case XF87_UCOM:
    X87(L2 "fucom %%st(1)" MID "fstp %%st(0)\n\tfstp %%st(0)");
  case XF87_TST: X87(L1 "ftst" MID "fstp %%st(0)");
  case XF87_COMI:
  case XF87_UCOMI: {
    if (op == XF87_COMI) {
      __asm__ volatile(X87_PRE L2 "fcomi %%st(1), %%st\n\tsetz %[z]\n\t"
                       "setp %[p]\n\tsetc %[cf]" MID "fstp %%st(0)\n\tfstp %%st(0)" X87_POST
                       : [h] "=m"(host), [sw] "=m"(sw), [z] "=r"(z), [p] "=r"(p), [cf] "=r"(c)
                       : [e2] "m"(env2), [mk] "m"(mk), [a] "r"(a), [b] "r"(b)
                       : X87_CLOB);
    } else {
      __asm__ volatile(X87_PRE L2 "fucomi %%st(1), %%st\n\tsetz %[z]\n\t"
                       "setp %[p]\n\tsetc %[cf]" MID "fstp %%st(0)\n\tfstp %%st(0)" X87_POST
                       : [h] "=m"(host), [sw] "=m"(sw), [z] "=r"(z), [p] "=r"(p), [cf] "=r"(c)
                       : [e2] "m"(env2), [mk] "m"(mk), [a] "r"(a), [b] "r"(b)
                       : X87_CLOB);
    }
    *aux = (uint64_t)(z ? 0x40 : 0) | (p ? 0x04 : 0) | (c ? 0x01 : 0);
    break;
  }
  case XF87_LD32: X87(L0 "flds (%[x])" MID "fstpt (%[a])");
  case XF87_LD64: X87(L0 "fldl (%[x])" MID "fstpt (%[a])");
  case XF87_ST32: X87(L1 "fstps (%[x])" MID);
  case XF87_ST64: X87(L1 "fstpl (%[x])" MID);
  case XF87_ILD16: X87(L0 "filds (%[x])" MID "fstpt (%[a])");
  case XF87_ILD32: X87(L0 "fildl (%[x])" MID "fstpt (%[a])");
  case XF87_ILD64: X87(L0 "fildll (%[x])" MID "fstpt (%[a])");
  case XF87_IST16: X87(L1 "fistps (%[x])" MID);
  case XF87_IST32: X87(L1 "fistpl (%[x])" MID);
  case XF87_IST64: X87(L1 "fistpll (%[x])" MID);
  case XF87_ISTT16: X87(L1 "fisttps (%[x])" MID);
  case XF87_ISTT32: X87(L1 "fisttpl (%[x])" MID);
  case XF87_ISTT64: X87(L1 "fisttpll (%[x])" MID);
  case XF87_CONST:
    switch (imm) {
    case 0: X87(L0 "fld1" MID "fstpt (%[a])");
    case 1: X87(L0 "fldl2t" MID "fstpt (%[a])");
    case 2: X87(L0 "fldl2e" MID "fstpt (%[a])");
    case 3: X87(L0 "fldpi" MID "fstpt (%[a])");
    case 4: X87(L0 "fldlg2" MID "fstpt (%[a])");
    case 5: X87(L0 "fldln2" MID "fstpt (%[a])");
    default: X87(L0 "fldz" MID "fstpt (%[a])");
    }
    break;
  default: break;
  }
  return sw & 0x477F;  // C3 C2 C1 C0, SF, exception flags (not TOP, ES, B)
}

#else
#error "CX86FP needs an x86-64 host (the interpreter's FP runs on the host's SSE/x87)"
#endif
