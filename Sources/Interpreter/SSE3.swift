import CX86FP
import X86

// SSE3 (CPUID.1:ECX.SSE3, "pni"): 0F 12/16 (F2/F3), 0F 7C/7D, 0F D0, 0F F0.
// FISTTP lives with the x87 code (X87.swift).

extension InterpreterCPU {
  func sse3(_ b: UInt8, _ p: SSEPrefix) throws(Fault) {
    if !hasSSE3 { throw Fault.ud() }
    let d = modReg
    switch (b, p) {
    case (0x12, .pF2):  // MOVDDUP xmm, xmm/m64
      try sseCheck()
      let lo = try xmmRM(8)[0]
      xmmSet(d, V128(lo, lo))
    case (0x12, .pF3), (0x16, .pF3):  // MOVSLDUP / MOVSHDUP xmm, xmm/m128
      try sseCheck()
      let s = try xmmRM(16, align: true).u32
      let o = b == 0x12 ? 0 : 1
      xmmSet(d, v128(SIMD4<UInt32>(s[o], s[o], s[2 + o], s[2 + o])))
    case (0x7C, .p66), (0x7D, .p66):  // HADDPD / HSUBPD
      try sseCheck()
      let s = try xmmRM(16, align: true)
      let a = xmmGet(d)
      // Each lane is one add/sub of a pair: the same lanes as ADDPD/SUBPD on
      // the rearranged operands, so flags and NaN choice are the host's.
      let op = Int32(b == 0x7C ? XF_ADDPD : XF_SUBPD)
      xmmSet(d, try sseFP(op, V128(a[0], s[0]), V128(a[1], s[1])))
    case (0x7C, .pF2), (0x7D, .pF2):  // HADDPS / HSUBPS
      try sseCheck()
      let s = try xmmRM(16, align: true).u32
      let a = xmmGet(d).u32
      let op = Int32(b == 0x7C ? XF_ADDPS : XF_SUBPS)
      let x = v128(SIMD4<UInt32>(a[0], a[2], s[0], s[2]))
      let y = v128(SIMD4<UInt32>(a[1], a[3], s[1], s[3]))
      xmmSet(d, try sseFP(op, x, y))
    case (0xD0, .p66), (0xD0, .pF2):  // ADDSUBPD / ADDSUBPS
      try sseCheck()
      let s = try xmmRM(16, align: true)
      xmmSet(d, try sseFP(Int32(p == .p66 ? XF_ADDSUBPD : XF_ADDSUBPS), xmmGet(d), s))
    case (0xF0, .pF2):  // LDDQU xmm, m128 (no alignment requirement)
      if modIsReg { throw Fault.ud() }
      try sseCheck()
      xmmSet(d, try readMem128(align: false))
    default:
      throw Fault.ud()
    }
  }
}
