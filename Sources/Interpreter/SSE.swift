import CX86FP
import X86

/// A 128-bit SSE value (lane 0 = bits 63:0). MMX values use lane 0 only.
typealias V128 = SIMD2<UInt64>

@inline(__always) func bc<T, U>(_ x: T, _: U.Type) -> U { unsafeBitCast(x, to: U.self) }

extension SIMD2 where Scalar == UInt64 {
  @inline(__always) var u8: SIMD16<UInt8> { bc(self, SIMD16<UInt8>.self) }
  @inline(__always) var i8: SIMD16<Int8> { bc(self, SIMD16<Int8>.self) }
  @inline(__always) var u16: SIMD8<UInt16> { bc(self, SIMD8<UInt16>.self) }
  @inline(__always) var i16: SIMD8<Int16> { bc(self, SIMD8<Int16>.self) }
  @inline(__always) var u32: SIMD4<UInt32> { bc(self, SIMD4<UInt32>.self) }
  @inline(__always) var i32: SIMD4<Int32> { bc(self, SIMD4<Int32>.self) }
  @inline(__always) var i64: SIMD2<Int64> { bc(self, SIMD2<Int64>.self) }
}

@inline(__always) func v128<T: SIMD>(_ x: T) -> V128 { bc(x, V128.self) }

/// Which mandatory prefix selects the SSE form: none, 66, F3, F2.
enum SSEPrefix { case none, p66, pF3, pF2 }

extension InterpreterCPU {
  // MARK: Register files

  @inline(__always) func xmmGet(_ i: Int) -> V128 {
    xmm.load(fromByteOffset: i &* 16, as: V128.self)
  }
  @inline(__always) func xmmSet(_ i: Int, _ v: V128) {
    xmm.storeBytes(of: v, toByteOffset: i &* 16, as: V128.self)
  }
  @inline(__always) func xmmSetLo(_ i: Int, _ v: UInt64) {
    xmm.storeBytes(of: v, toByteOffset: i &* 16, as: UInt64.self)
  }
  @inline(__always) func xmmSetHi(_ i: Int, _ v: UInt64) {
    xmm.storeBytes(of: v, toByteOffset: i &* 16 &+ 8, as: UInt64.self)
  }
  @inline(__always) func xmmSet32(_ i: Int, _ v: UInt32) {
    xmm.storeBytes(of: v, toByteOffset: i &* 16, as: UInt32.self)
  }

  /// MMX register i (physical x87 register Ri; `mmxEnter` made TOP 0 so Ri = ST(i)).
  @inline(__always) func mmGet(_ i: Int) -> UInt64 {
    fpuRegs.load(fromByteOffset: (i & 7) &* 16, as: UInt64.self)
  }
  /// Writing an MMX register sets its exponent/sign field to all ones.
  @inline(__always) func mmSet(_ i: Int, _ v: UInt64) {
    fpuRegs.storeBytes(of: v, toByteOffset: (i & 7) &* 16, as: UInt64.self)
    fpuRegs.storeBytes(of: UInt16(0xFFFF), toByteOffset: (i & 7) &* 16 &+ 8, as: UInt16.self)
  }

  // MARK: Availability checks

  /// SSE instructions: #UD without OSFXSR or with EM, #NM with TS.
  @inline(__always) func sseCheck() throws(Fault) {
    if cr0 & CR0.em != 0 || cr4 & CR4.osfxsr == 0 { throw Fault.ud() }
    if cr0 & CR0.ts != 0 { throw Fault.nm() }
  }

  /// MMX instructions: #UD with EM, #NM with TS, #MF for a pending x87
  /// exception; then the x87 -> MMX transition (TOP = 0, all tags valid).
  func mmxEnter() throws(Fault) {
    try mmxCheck()
    mmxTransition()
  }

  @inline(__always) func mmxCheck() throws(Fault) {
    if cr0 & CR0.em != 0 { throw Fault.ud() }
    if cr0 & CR0.ts != 0 { throw Fault.nm() }
    try x87PendingCheck()
  }

  @inline(__always) func mmxTransition() {
    x87NormalizeTop()
    fpuTW = 0xFF
  }

  // MARK: Memory operands

  @inline(__always) func alignCheck16() throws(Fault) {
    if linear(eaSeg, addr()) & 15 != 0 { throw Fault.gp(0) }
  }

  /// 16-byte load of the memory operand (two 8-byte reads; a fault leaves nothing changed).
  func readMem128(align: Bool) throws(Fault) -> V128 {
    if align { try alignCheck16() }
    let a = addr()
    let lo = try readMem(eaSeg, a, 8)
    let hi = try readMem(eaSeg, (a &+ 8) & sizeMask(adSize), 8)
    return V128(lo, hi)
  }

  /// 16-byte store: both pages are checked for writability before any byte is written.
  func writeMem128(_ v: V128, align: Bool) throws(Fault) {
    if align { try alignCheck16() }
    let a = addr()
    let a2 = (a &+ 8) & sizeMask(adSize)
    try checkSegment(eaSeg, a, 16, write: true)
    let l1 = linear(eaSeg, a)
    if l1 & 0xFFF > 0xFF0 {
      do {
        _ = try translateAccess(l1, .write, user: cpl == 3)
        _ = try translateAccess(linear(eaSeg, a2), .write, user: cpl == 3)
      } catch {
        throw eaSeg == SS ? stackFault(error) : error
      }
    }
    try writeMem(eaSeg, a, 8, v[0])
    try writeMem(eaSeg, a2, 8, v[1])
  }

  /// The r/m operand as an XMM value: a register, or `size` bytes of memory (zero-extended).
  @inline(__always) func xmmRM(_ size: Int, align: Bool = false) throws(Fault) -> V128 {
    if modIsReg { return xmmGet(modRM) }
    switch size {
    case 16: return try readMem128(align: align)
    case 8: return V128(try readMem(eaSeg, addr(), 8), 0)
    default: return V128(try readMem(eaSeg, addr(), size), 0)
    }
  }

  /// The r/m operand as an MMX value (register or 8 bytes of memory).
  @inline(__always) func mmRM() throws(Fault) -> UInt64 {
    if modIsReg { return mmGet(modRM) }
    return try readMem(eaSeg, addr(), 8)
  }

  // MARK: Floating point through the host

  /// Runs one SSE FP operation with the guest MXCSR; raises #XM/#UD for unmasked
  /// exceptions (destination unchanged), else merges the flags into MXCSR.
  @inline(__always)
  func sseFP(_ op: Int32, _ d: V128, _ s: V128, imm: Int = 0) throws(Fault) -> V128 {
    var gpr: UInt64 = 0
    return try sseFP(op, d, s, &gpr, imm: imm)
  }

  func sseFP(_ op: Int32, _ d: V128, _ s: V128, _ gpr: inout UInt64, imm: Int = 0) throws(Fault)
    -> V128
  {
    var dd = d
    var ss = s
    var g = gpr
    let m = withUnsafeMutableBytes(of: &dd) { dp in
      withUnsafeMutableBytes(of: &ss) { sp in
        xf_sse(op, mxcsr & ~0x3F, dp.baseAddress, sp.baseAddress, &g, Int32(imm))
      }
    }
    let raised = m & 0x3F
    if raised != 0 {
      let unmasked = raised & ~(mxcsr >> 7) & 0x3F
      if unmasked != 0 {
        // Pre-computation exceptions (invalid, denormal, divide) suppress the
        // post-computation ones (overflow, underflow, precision); an unmasked
        // overflow or underflow is reported without precision.
        let pre = raised & 0x7
        mxcsr |= pre & unmasked != 0 ? pre : (unmasked & 0x18 != 0 ? raised & ~0x20 : raised)
        throw cr4 & CR4.osxmmexcpt != 0 ? Fault(vector: 19, code: 0, hasCode: false) : Fault.ud()
      }
      mxcsr |= raised
    }
    gpr = g
    return dd
  }

  // MARK: Dispatch

  /// The SSE/SSE2/MMX part of the 0F map. Returns false for opcodes that are
  /// not SSE/MMX (the caller raises #UD); RIP is set by the caller.
  func execSSE(_ b: UInt8) throws(Fault) -> Bool {
    let p: SSEPrefix = rep == 0xF3 ? .pF3 : rep == 0xF2 ? .pF2 : has66 ? .p66 : .none
    // The immediate is fetched before the memory operand is used, so that a
    // RIP-relative address is relative to the end of the instruction.
    let hasImm = (b >= 0x70 && b <= 0x73) || b == 0xC2 || b == 0xC4 || b == 0xC5 || b == 0xC6
    switch b {
    case 0x7C, 0x7D, 0xD0, 0xF0:  // HADD/HSUB, ADDSUB, LDDQU: SSE3.swift
      try decodeModRM()
      try sse3(b, p)
    // MOVDDUP / MOVSLDUP / MOVSHDUP (a `where` binds to one pattern only).
    case 0x12 where p == .pF2 || p == .pF3, 0x16 where p == .pF2 || p == .pF3:
      try decodeModRM()
      try sse3(b, p)
    case 0x10...0x17, 0x28, 0x29, 0x2B, 0x50, 0x54...0x57, 0xC3, 0xC6:
      try decodeModRM()
      try sseMove(b, p, hasImm ? Int(try fetch8()) : 0)
    case 0x2A...0x2F, 0x51...0x53, 0x58...0x5F, 0xC2, 0xE6:
      try decodeModRM()
      try sseArith(b, p, hasImm ? Int(try fetch8()) : 0)
    case 0x60...0x76, 0x78...0x7F, 0xC4, 0xC5, 0xD1...0xFE:
      try decodeModRM()
      try sseInt(b, p, hasImm ? Int(try fetch8()) : 0)
    case 0x77:  // EMMS (taken over from exec0F); 66/F2/F3 0F 77 are #UD
      if cr0 & CR0.em != 0 || p != .none { throw Fault.ud() }
      if cr0 & CR0.ts != 0 { throw Fault.nm() }
      try x87PendingCheck()
      // As the host (AMD Zen) does: all tags empty and TOP = 0.
      x87NormalizeTop()
      fpuTW = 0
    default:
      return false
    }
    return true
  }

  // MARK: Moves, logic, shuffles on FP data

  func sseMove(_ b: UInt8, _ p: SSEPrefix, _ imm: Int) throws(Fault) {
    let d = modReg
    switch (b, p) {
    case (0x10, .none), (0x10, .p66):  // MOVUPS/MOVUPD xmm, xmm/m128
      try sseCheck()
      xmmSet(d, try xmmRM(16))
    case (0x10, .pF3):  // MOVSS
      try sseCheck()
      if modIsReg {
        xmmSet32(d, UInt32(truncatingIfNeeded: xmmGet(modRM)[0]))
      } else {
        xmmSet(d, V128(try readMem(eaSeg, addr(), 4), 0))
      }
    case (0x10, .pF2):  // MOVSD
      try sseCheck()
      if modIsReg {
        xmmSetLo(d, xmmGet(modRM)[0])
      } else {
        xmmSet(d, V128(try readMem(eaSeg, addr(), 8), 0))
      }
    case (0x11, .none), (0x11, .p66):  // MOVUPS/MOVUPD xmm/m128, xmm
      try sseCheck()
      if modIsReg { xmmSet(modRM, xmmGet(d)) } else { try writeMem128(xmmGet(d), align: false) }
    case (0x11, .pF3):
      try sseCheck()
      let v = xmmGet(d)[0] & 0xFFFF_FFFF
      if modIsReg { xmmSet32(modRM, UInt32(v)) } else { try writeMem(eaSeg, addr(), 4, v) }
    case (0x11, .pF2):
      try sseCheck()
      let v = xmmGet(d)[0]
      if modIsReg { xmmSetLo(modRM, v) } else { try writeMem(eaSeg, addr(), 8, v) }
    case (0x12, .none), (0x12, .p66):  // MOVLPS/MOVLPD xmm, m64; MOVHLPS xmm, xmm
      try sseCheck()
      if modIsReg {
        if p == .p66 { throw Fault.ud() }
        xmmSetLo(d, xmmGet(modRM)[1])
      } else {
        xmmSetLo(d, try readMem(eaSeg, addr(), 8))
      }
    case (0x13, .none), (0x13, .p66):  // MOVLPS/MOVLPD m64, xmm
      if modIsReg { throw Fault.ud() }
      try sseCheck()
      try writeMem(eaSeg, addr(), 8, xmmGet(d)[0])
    case (0x14, .none):  // UNPCKLPS
      try sseCheck()
      let a = xmmGet(d).u32
      let s = try xmmRM(16, align: true).u32
      xmmSet(d, v128(SIMD4<UInt32>(a[0], s[0], a[1], s[1])))
    case (0x14, .p66):  // UNPCKLPD
      try sseCheck()
      let s = try xmmRM(16, align: true)
      xmmSetHi(d, s[0])
    case (0x15, .none):  // UNPCKHPS
      try sseCheck()
      let a = xmmGet(d).u32
      let s = try xmmRM(16, align: true).u32
      xmmSet(d, v128(SIMD4<UInt32>(a[2], s[2], a[3], s[3])))
    case (0x15, .p66):  // UNPCKHPD
      try sseCheck()
      let s = try xmmRM(16, align: true)
      xmmSet(d, V128(xmmGet(d)[1], s[1]))
    case (0x16, .none), (0x16, .p66):  // MOVHPS/MOVHPD xmm, m64; MOVLHPS xmm, xmm
      try sseCheck()
      if modIsReg {
        if p == .p66 { throw Fault.ud() }
        xmmSetHi(d, xmmGet(modRM)[0])
      } else {
        xmmSetHi(d, try readMem(eaSeg, addr(), 8))
      }
    case (0x17, .none), (0x17, .p66):  // MOVHPS/MOVHPD m64, xmm
      if modIsReg { throw Fault.ud() }
      try sseCheck()
      try writeMem(eaSeg, addr(), 8, xmmGet(d)[1])
    case (0x28, .none), (0x28, .p66):  // MOVAPS/MOVAPD load
      try sseCheck()
      xmmSet(d, try xmmRM(16, align: true))
    case (0x29, .none), (0x29, .p66):  // MOVAPS/MOVAPD store
      try sseCheck()
      if modIsReg { xmmSet(modRM, xmmGet(d)) } else { try writeMem128(xmmGet(d), align: true) }
    case (0x2B, .none), (0x2B, .p66):  // MOVNTPS/MOVNTPD
      if modIsReg { throw Fault.ud() }
      try sseCheck()
      try writeMem128(xmmGet(d), align: true)
    case (0x50, .none), (0x50, .p66):  // MOVMSKPS/MOVMSKPD r32, xmm
      if !modIsReg { throw Fault.ud() }
      try sseCheck()
      let v = xmmGet(modRM)
      let m: UInt64
      if p == .none {
        let w = v.u32
        m =
          UInt64(w[0] >> 31) | UInt64(w[1] >> 31) << 1 | UInt64(w[2] >> 31) << 2
          | UInt64(w[3] >> 31) << 3
      } else {
        m = (v[0] >> 63) | (v[1] >> 63) << 1
      }
      setReg(modReg, mode64 ? 8 : 4, m)
    case (0x54...0x57, .none), (0x54...0x57, .p66):  // AND/ANDN/OR/XOR PS/PD
      try sseCheck()
      let a = xmmGet(d)
      let s = try xmmRM(16, align: true)
      let r: V128
      switch b {
      case 0x54: r = a & s
      case 0x55: r = ~a & s
      case 0x56: r = a | s
      default: r = a ^ s
      }
      xmmSet(d, r)
    case (0xC3, .none):  // MOVNTI m32/m64, r32/r64
      if modIsReg { throw Fault.ud() }
      let s = opSize == 8 ? 8 : 4
      try writeMem(eaSeg, addr(), s, getReg(modReg, s))
    case (0xC6, .none):  // SHUFPS
      try sseCheck()
      let a = xmmGet(d).u32
      let s = try xmmRM(16, align: true).u32
      let i = imm
      xmmSet(
        d, v128(SIMD4<UInt32>(a[i & 3], a[(i >> 2) & 3], s[(i >> 4) & 3], s[(i >> 6) & 3])))
    case (0xC6, .p66):  // SHUFPD
      try sseCheck()
      let a = xmmGet(d)
      let s = try xmmRM(16, align: true)
      let i = imm
      xmmSet(d, V128(a[i & 1], s[(i >> 1) & 1]))
    default:
      throw Fault.ud()
    }
  }

  // MARK: FP arithmetic, compares, conversions

  func sseArith(_ b: UInt8, _ p: SSEPrefix, _ immediate: Int) throws(Fault) {
    let d = modReg
    // ADD MUL SUB MIN DIV MAX SQRT: op base per opcode, + 0 SS, 1 SD, 2 PS, 3 PD.
    func form(_ base: Int32) throws(Fault) {
      try sseCheck()
      let k: Int32
      let s: V128
      switch p {
      case .pF3:
        k = 0
        s = try xmmRM(4)
      case .pF2:
        k = 1
        s = try xmmRM(8)
      case .none:
        k = 2
        s = try xmmRM(16, align: true)
      case .p66:
        k = 3
        s = try xmmRM(16, align: true)
      }
      let imm = immediate & 7  // legacy SSE uses predicate bits 2:0 only
      xmmSet(d, try sseFP(base + k, xmmGet(d), s, imm: imm))
    }
    switch b {
    case 0x58: try form(Int32(XF_ADDSS))
    case 0x59: try form(Int32(XF_MULSS))
    case 0x5C: try form(Int32(XF_SUBSS))
    case 0x5D: try form(Int32(XF_MINSS))
    case 0x5E: try form(Int32(XF_DIVSS))
    case 0x5F: try form(Int32(XF_MAXSS))
    case 0x51: try form(Int32(XF_SQRTSS))
    case 0xC2: try form(Int32(XF_CMPSS))
    case 0x52, 0x53:  // RSQRTPS/RSQRTSS, RCPPS/RCPSS
      try sseCheck()
      let base = Int32(b == 0x52 ? XF_RSQRTSS : XF_RCPSS)
      switch p {
      case .pF3: xmmSet(d, try sseFP(base, xmmGet(d), try xmmRM(4)))
      case .none: xmmSet(d, try sseFP(base + 1, xmmGet(d), try xmmRM(16, align: true)))
      default: throw Fault.ud()
      }
    case 0x5A:
      try sseCheck()
      switch p {
      case .none: xmmSet(d, try sseFP(Int32(XF_CVTPS2PD), xmmGet(d), try xmmRM(8)))
      case .p66: xmmSet(d, try sseFP(Int32(XF_CVTPD2PS), xmmGet(d), try xmmRM(16, align: true)))
      case .pF3: xmmSet(d, try sseFP(Int32(XF_CVTSS2SD), xmmGet(d), try xmmRM(4)))
      case .pF2: xmmSet(d, try sseFP(Int32(XF_CVTSD2SS), xmmGet(d), try xmmRM(8)))
      }
    case 0x5B:
      try sseCheck()
      let op: Int32
      switch p {
      case .none: op = Int32(XF_CVTDQ2PS)
      case .p66: op = Int32(XF_CVTPS2DQ)
      case .pF3: op = Int32(XF_CVTTPS2DQ)
      case .pF2: throw Fault.ud()
      }
      xmmSet(d, try sseFP(op, xmmGet(d), try xmmRM(16, align: true)))
    case 0xE6:
      try sseCheck()
      switch p {
      case .p66: xmmSet(d, try sseFP(Int32(XF_CVTTPD2DQ), xmmGet(d), try xmmRM(16, align: true)))
      case .pF2: xmmSet(d, try sseFP(Int32(XF_CVTPD2DQ), xmmGet(d), try xmmRM(16, align: true)))
      case .pF3: xmmSet(d, try sseFP(Int32(XF_CVTDQ2PD), xmmGet(d), try xmmRM(8)))
      case .none: throw Fault.ud()
      }
    case 0x2E, 0x2F:  // UCOMIS / COMIS
      let op: Int32
      let s: V128
      switch p {
      case .none:
        try sseCheck()
        op = Int32(b == 0x2E ? XF_UCOMISS : XF_COMISS)
        s = try xmmRM(4)
      case .p66:
        try sseCheck()
        op = Int32(b == 0x2E ? XF_UCOMISD : XF_COMISD)
        s = try xmmRM(8)
      default: throw Fault.ud()
      }
      var f: UInt64 = 0
      _ = try sseFP(op, xmmGet(d), s, &f)
      setStatus(f)  // ZF PF CF from the compare; OF SF AF cleared
    case 0x2A:
      switch p {
      case .pF3, .pF2:  // CVTSI2SS / CVTSI2SD
        try sseCheck()
        let w = opSize == 8
        var g = try readE(w ? 8 : 4)
        let op: Int32 =
          p == .pF3
          ? Int32(w ? XF_CVTSI2SS64 : XF_CVTSI2SS32) : Int32(w ? XF_CVTSI2SD64 : XF_CVTSI2SD32)
        xmmSet(d, try sseFP(op, xmmGet(d), V128(0, 0), &g))
      case .none:  // CVTPI2PS xmm, mm/m64
        try sseCheck()
        let src: UInt64
        if modIsReg {
          try mmxEnter()
          src = mmGet(modRM)
        } else {
          src = try readMem(eaSeg, addr(), 8)
        }
        // Two int32 -> float lanes; the upper half of the destination is kept.
        let r = try sseFP(Int32(XF_CVTDQ2PS), V128(0, 0), V128(src, 0))
        xmmSetLo(d, r[0])
      case .p66:  // CVTPI2PD xmm, mm/m64
        try sseCheck()
        let src: UInt64
        if modIsReg {
          try mmxEnter()
          src = mmGet(modRM)
        } else {
          src = try readMem(eaSeg, addr(), 8)
        }
        xmmSet(d, try sseFP(Int32(XF_CVTDQ2PD), xmmGet(d), V128(src, 0)))
      }
    case 0x2C, 0x2D:
      let trunc = b == 0x2C
      switch p {
      case .pF3, .pF2:  // CVT(T)SS2SI / CVT(T)SD2SI
        try sseCheck()
        let w = opSize == 8
        let s = try xmmRM(p == .pF3 ? 4 : 8)
        let op: Int32
        if p == .pF3 {
          op = Int32(
            trunc ? (w ? XF_CVTTSS2SI64 : XF_CVTTSS2SI32) : (w ? XF_CVTSS2SI64 : XF_CVTSS2SI32))
        } else {
          op = Int32(
            trunc ? (w ? XF_CVTTSD2SI64 : XF_CVTTSD2SI32) : (w ? XF_CVTSD2SI64 : XF_CVTSD2SI32))
        }
        var g: UInt64 = 0
        _ = try sseFP(op, V128(0, 0), s, &g)
        setReg(modReg, w ? 8 : 4, g)
      case .none:  // CVT(T)PS2PI mm, xmm/m64
        try sseCheck()
        try mmxCheck()  // #MF before the operand's faults
        let s = try xmmRM(8)
        mmxTransition()  // the MMX transition happens even if the conversion raises #XM
        let r = try sseFP(Int32(trunc ? XF_CVTTPS2DQ : XF_CVTPS2DQ), V128(0, 0), V128(s[0], 0))
        mmSet(modReg, r[0])
      case .p66:  // CVT(T)PD2PI mm, xmm/m128
        try sseCheck()
        try mmxCheck()
        let s = try xmmRM(16, align: true)
        mmxTransition()
        let r = try sseFP(Int32(trunc ? XF_CVTTPD2DQ : XF_CVTPD2DQ), V128(0, 0), s)
        mmSet(modReg, r[0])
      }
    default:
      throw Fault.ud()
    }
  }
}
