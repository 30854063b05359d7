// CX86FP: the interpreter's SSE/x87 floating-point arithmetic, executed on the
// host's own SSE and x87 units with the guest's MXCSR / control word loaded
// (all exceptions masked on the host). This gives the guest exactly the
// rounding, flags, DAZ/FTZ, NaN propagation, "indefinite" conversion results
// and precision control of x86 silicon. Only the interpreter uses it.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// SSE operations on 16-byte buffers: d = d OP s (two-operand SSE semantics:
// scalar forms keep the upper part of d). Returns the MXCSR after the
// operation; the caller passes its MXCSR with the flags cleared.
enum {
  XF_ADDSS, XF_ADDSD, XF_ADDPS, XF_ADDPD,
  XF_SUBSS, XF_SUBSD, XF_SUBPS, XF_SUBPD,
  XF_MULSS, XF_MULSD, XF_MULPS, XF_MULPD,
  XF_DIVSS, XF_DIVSD, XF_DIVPS, XF_DIVPD,
  XF_MINSS, XF_MINSD, XF_MINPS, XF_MINPD,
  XF_MAXSS, XF_MAXSD, XF_MAXPS, XF_MAXPD,
  XF_SQRTSS, XF_SQRTSD, XF_SQRTPS, XF_SQRTPD,
  XF_RCPSS, XF_RCPPS, XF_RSQRTSS, XF_RSQRTPS,
  XF_CVTSS2SD, XF_CVTSD2SS, XF_CVTPS2PD, XF_CVTPD2PS,
  XF_CVTDQ2PS, XF_CVTPS2DQ, XF_CVTTPS2DQ,
  XF_CVTDQ2PD, XF_CVTPD2DQ, XF_CVTTPD2DQ,
  XF_CMPSS, XF_CMPSD, XF_CMPPS, XF_CMPPD,  // + predicate (0-7) in imm
  XF_COMISS, XF_UCOMISS, XF_COMISD, XF_UCOMISD,  // RFLAGS in *gpr
  XF_CVTSI2SS32, XF_CVTSI2SS64, XF_CVTSI2SD32, XF_CVTSI2SD64,  // source in *gpr
  XF_CVTSS2SI32, XF_CVTSS2SI64, XF_CVTTSS2SI32, XF_CVTTSS2SI64,  // result in *gpr
  XF_CVTSD2SI32, XF_CVTSD2SI64, XF_CVTTSD2SI32, XF_CVTTSD2SI64,
  XF_ADDSUBPS, XF_ADDSUBPD,  // SSE3
  XF_ROUNDSS, XF_ROUNDSD, XF_ROUNDPS, XF_ROUNDPD,  // SSE4.1; + rounding control (0-15) in imm
  XF_SSE_COUNT
};

uint32_t xf_sse(int op, uint32_t mxcsr, void *d, const void *s, uint64_t *gpr, int imm);

// x87 operations. Registers are 10-byte extended-precision images. The host
// x87 runs with the guest control word (exceptions masked) and the guest's
// condition codes (sw). Returns the resulting condition codes (C0-C3) and
// the exception flags and SF the operation raised.
enum {
  XF87_ADD, XF87_SUB, XF87_SUBR, XF87_MUL, XF87_DIV, XF87_DIVR,  // a = a OP b
  XF87_SQRT, XF87_ABS, XF87_CHS, XF87_RNDINT,  // a = f(a)
  XF87_SCALE, XF87_PREM, XF87_PREM1,  // a = f(a, b)
  XF87_XTRACT,  // a = significand, b = exponent
  XF87_F2XM1, XF87_SIN, XF87_COS,  // a = f(a)
  XF87_YL2X, XF87_YL2XP1, XF87_PATAN,  // a = f(b, a) (result replaces b's slot: in a)
  XF87_PTAN, XF87_SINCOS,  // a, b = results (b is the new ST0)
  XF87_COM, XF87_UCOM, XF87_TST,  // compare a with b: C0 C2 C3
  XF87_COMI, XF87_UCOMI,  // compare, RFLAGS in *aux
  XF87_LD32, XF87_LD64,  // a = (m32/m64 at *aux)
  XF87_ST32, XF87_ST64,  // *aux = a rounded
  XF87_ILD16, XF87_ILD32, XF87_ILD64,  // a = integer *aux
  XF87_IST16, XF87_IST32, XF87_IST64,  // *aux = integer(a) (RC)
  XF87_ISTT16, XF87_ISTT32, XF87_ISTT64,  // truncating
  XF87_CONST,  // a = constant number imm (0 1, 1 L2T, 2 L2E, 3 PI, 4 LG2, 5 LN2, 6 Z)
  XF87_COUNT,
  // a = a OP memory operand at *aux: XF87_MEMOP + kind * 8 + reg field, kind 0 m32fp,
  // 1 m64fp, 2 m16int, 3 m32int; reg field as in D8 (0 ADD 1 MUL 2/3 COM 4 SUB 5 SUBR 6 DIV 7 DIVR).
  XF87_MEMOP = 100
};

uint16_t xf_x87(int op, uint16_t cw, uint16_t sw, uint8_t *a, uint8_t *b, uint64_t *aux, int imm);

#ifdef __cplusplus
}
#endif
