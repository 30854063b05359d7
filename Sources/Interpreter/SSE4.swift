import CX86FP
import X86

// SSE4.1 and the non-string SSE4.2 forms (PCMPGTQ) of the 66 0F 38 and
// 66 0F 3A maps. The string instructions are in SSE42String.swift, CRC32 in
// ThreeByte.swift.

extension InterpreterCPU {
  func sse4Map38(_ b: UInt8) throws(Fault) {
    if b == 0x37 {
      if !hasSSE42 { throw Fault.ud() }
    } else if !hasSSE41 {
      throw Fault.ud()
    }
    let d = modReg
    switch b {
    case 0x20...0x25, 0x30...0x35:  // PMOVSX / PMOVZX
      try sseCheck()
      let k = Int(b & 7)
      // Source bytes per form: BW 8, BD 4, BQ 2, WD 8, WQ 4, DQ 8.
      let size = [8, 4, 2, 8, 4, 8][k]
      let s = try xmmRM(size)
      let signed = b < 0x30
      let r: V128
      switch k {
      case 0:
        let x = s.i8.lowHalf
        r =
          signed
          ? v128(SIMD8<Int16>(truncatingIfNeeded: x))
          : v128(SIMD8<UInt16>(truncatingIfNeeded: s.u8.lowHalf))
      case 1:
        let x = s.i8.lowHalf.lowHalf
        r =
          signed
          ? v128(SIMD4<Int32>(truncatingIfNeeded: x))
          : v128(SIMD4<UInt32>(truncatingIfNeeded: s.u8.lowHalf.lowHalf))
      case 2:
        let x = s.i8.lowHalf.lowHalf.lowHalf
        r =
          signed
          ? v128(SIMD2<Int64>(truncatingIfNeeded: x))
          : V128(truncatingIfNeeded: s.u8.lowHalf.lowHalf.lowHalf)
      case 3:
        r =
          signed
          ? v128(SIMD4<Int32>(truncatingIfNeeded: s.i16.lowHalf))
          : v128(SIMD4<UInt32>(truncatingIfNeeded: s.u16.lowHalf))
      case 4:
        r =
          signed
          ? v128(SIMD2<Int64>(truncatingIfNeeded: s.i16.lowHalf.lowHalf))
          : V128(truncatingIfNeeded: s.u16.lowHalf.lowHalf)
      default:
        r =
          signed
          ? v128(SIMD2<Int64>(truncatingIfNeeded: s.i32.lowHalf))
          : V128(truncatingIfNeeded: s.u32.lowHalf)
      }
      xmmSet(d, r)
    case 0x2A:  // MOVNTDQA xmm, m128
      if modIsReg { throw Fault.ud() }
      try sseCheck()
      xmmSet(d, try readMem128(align: true))
    case 0x10, 0x14, 0x15:  // PBLENDVB / BLENDVPS / BLENDVPD: mask in XMM0
      try sseCheck()
      let s = try xmmRM(16, align: true)
      let a = xmmGet(d)
      let m = xmmGet(0)
      let sel: V128
      switch b {
      case 0x10: sel = v128(mask(m.i8 .< 0, SIMD16<UInt8>.self))
      case 0x14: sel = v128(mask(m.i32 .< 0, SIMD4<UInt32>.self))
      default: sel = mask(m.i64 .< 0, V128.self)
      }
      xmmSet(d, (s & sel) | (a & ~sel))
    case 0x17:  // PTEST
      try sseCheck()
      let s = try xmmRM(16, align: true)
      let a = xmmGet(d)
      let z = (s & a) == V128(0, 0)
      let c = (s & ~a) == V128(0, 0)
      setStatus((z ? RFLAGS.zf : 0) | (c ? RFLAGS.cf : 0))
    case 0x41:  // PHMINPOSUW
      try sseCheck()
      let w = try xmmRM(16, align: true).u16
      var best = 0
      for i in 1..<8 where w[i] < w[best] { best = i }
      xmmSet(d, V128(UInt64(w[best]) | UInt64(best) << 16, 0))
    default:
      try sseCheck()
      let s = try xmmRM(16, align: true)
      let a = xmmGet(d)
      let r: V128
      switch b {
      case 0x28:  // PMULDQ
        let x = a.i32
        let y = s.i32
        r = V128(
          UInt64(bitPattern: Int64(x[0]) &* Int64(y[0])),
          UInt64(bitPattern: Int64(x[2]) &* Int64(y[2])))
      case 0x29: r = mask(a .== s, V128.self)  // PCMPEQQ
      case 0x37: r = mask(a.i64 .> s.i64, V128.self)  // PCMPGTQ
      case 0x2B:  // PACKUSDW
        func pack(_ v: V128) -> UInt64 {
          let c = v.i32.clamped(
            lowerBound: SIMD4<Int32>(repeating: 0), upperBound: SIMD4<Int32>(repeating: 65535))
          return bc(SIMD4<UInt16>(truncatingIfNeeded: c), UInt64.self)
        }
        r = V128(pack(a), pack(s))
      case 0x38: r = v128(pointwiseMin(a.i8, s.i8))
      case 0x39: r = v128(pointwiseMin(a.i32, s.i32))
      case 0x3A: r = v128(pointwiseMin(a.u16, s.u16))
      case 0x3B: r = v128(pointwiseMin(a.u32, s.u32))
      case 0x3C: r = v128(pointwiseMax(a.i8, s.i8))
      case 0x3D: r = v128(pointwiseMax(a.i32, s.i32))
      case 0x3E: r = v128(pointwiseMax(a.u16, s.u16))
      case 0x3F: r = v128(pointwiseMax(a.u32, s.u32))
      case 0x40: r = v128(a.u32 &* s.u32)  // PMULLD
      default: throw Fault.ud()
      }
      xmmSet(d, r)
    }
  }

  func sse4Map3A(_ b: UInt8, _ imm: Int) throws(Fault) {
    if b >= 0x60 && b <= 0x63 {
      try pcmpStr(b, imm)  // SSE42String.swift
      return
    }
    if !hasSSE41 { throw Fault.ud() }
    let d = modReg
    switch b {
    case 0x08...0x0B:  // ROUNDPS / ROUNDPD / ROUNDSS / ROUNDSD
      try sseCheck()
      let op: Int32
      let s: V128
      switch b {
      case 0x08:
        op = Int32(XF_ROUNDPS)
        s = try xmmRM(16, align: true)
      case 0x09:
        op = Int32(XF_ROUNDPD)
        s = try xmmRM(16, align: true)
      case 0x0A:
        op = Int32(XF_ROUNDSS)
        s = try xmmRM(4)
      default:
        op = Int32(XF_ROUNDSD)
        s = try xmmRM(8)
      }
      xmmSet(d, try sseFP(op, xmmGet(d), s, imm: imm & 15))
    case 0x0C, 0x0D, 0x0E:  // BLENDPS / BLENDPD / PBLENDW
      try sseCheck()
      let s = try xmmRM(16, align: true)
      let a = xmmGet(d)
      var sel = SIMD8<UInt16>()
      let lanes = b == 0x0C ? 4 : (b == 0x0D ? 2 : 8)
      let per = 8 / lanes
      for i in 0..<8 where (imm >> (i / per)) & 1 != 0 { sel[i] = 0xFFFF }
      let m = v128(sel)
      xmmSet(d, (s & m) | (a & ~m))
    case 0x14, 0x15, 0x16, 0x17:  // PEXTRB / PEXTRW / PEXTRD/Q / EXTRACTPS
      try sseCheck()
      let v = xmmGet(d)
      let w = b == 0x16 && rex & 8 != 0 ? 8 : [1, 2, 4, 4][Int(b - 0x14)]
      let x: UInt64
      switch w {
      case 1: x = UInt64(v.u8[imm & 15])
      case 2: x = UInt64(v.u16[imm & 7])
      case 4: x = UInt64(v.u32[imm & 3])
      default: x = v[imm & 1]
      }
      if modIsReg {
        setReg(modRM, w == 8 ? 8 : 4, x)  // a register destination is zero-extended
      } else {
        try writeMem(eaSeg, addr(), w, x)
      }
    case 0x20:  // PINSRB xmm, r32/m8
      try sseCheck()
      let x = UInt8(
        truncatingIfNeeded: modIsReg ? getReg(modRM, 4) : try readMem(eaSeg, addr(), 1))
      var v = xmmGet(d).u8
      v[imm & 15] = x
      xmmSet(d, v128(v))
    case 0x22:  // PINSRD / PINSRQ
      try sseCheck()
      if rex & 8 != 0 {
        let x = try readE(8)
        var v = xmmGet(d)
        v[imm & 1] = x
        xmmSet(d, v)
      } else {
        let x = UInt32(truncatingIfNeeded: try readE(4))
        var v = xmmGet(d).u32
        v[imm & 3] = x
        xmmSet(d, v128(v))
      }
    case 0x21:  // INSERTPS xmm, xmm/m32
      try sseCheck()
      let x: UInt32
      if modIsReg {
        x = xmmGet(modRM).u32[(imm >> 6) & 3]
      } else {
        x = UInt32(truncatingIfNeeded: try readMem(eaSeg, addr(), 4))
      }
      var v = xmmGet(d).u32
      v[(imm >> 4) & 3] = x
      for i in 0..<4 where (imm >> i) & 1 != 0 { v[i] = 0 }
      xmmSet(d, v128(v))
    case 0x40, 0x41:  // DPPS / DPPD
      try sseCheck()
      let s = try xmmRM(16, align: true)
      xmmSet(d, b == 0x40 ? try dpps(xmmGet(d), s, imm) : try dppd(xmmGet(d), s, imm))
    case 0x42:  // MPSADBW
      try sseCheck()
      let s = try xmmRM(16, align: true).u8
      let a = xmmGet(d).u8
      let o1 = ((imm >> 2) & 1) * 4
      let o2 = (imm & 3) * 4
      var r = SIMD8<UInt16>()
      for i in 0..<8 {
        var sum = 0
        for k in 0..<4 { sum += abs(Int(a[o1 + i + k]) - Int(s[o2 + k])) }
        r[i] = UInt16(sum)
      }
      xmmSet(d, v128(r))
    default:
      throw Fault.ud()
    }
  }

  /// DPPS as the SDM defines it, one rounded stage at a time: the selected
  /// products, two pair sums, the final sum. Each stage goes through `sseFP`,
  /// so an unmasked exception stops at the stage that raised it, with the
  /// flags of the stages before.
  func dpps(_ a: V128, _ s: V128, _ imm: Int) throws(Fault) -> V128 {
    var x = a.u32
    var y = s.u32
    for i in 0..<4 where (imm >> (4 + i)) & 1 == 0 {
      x[i] = 0
      y[i] = 0
    }
    let p = try sseFP(Int32(XF_MULPS), v128(x), v128(y)).u32
    let sums = try sseFP(
      Int32(XF_ADDPS), v128(SIMD4<UInt32>(p[0], p[2], 0, 0)), v128(SIMD4<UInt32>(p[1], p[3], 0, 0))
    ).u32
    let t = try sseFP(Int32(XF_ADDSS), V128(UInt64(sums[0]), 0), V128(UInt64(sums[1]), 0)).u32[0]
    var r = SIMD4<UInt32>()
    for i in 0..<4 where (imm >> i) & 1 != 0 { r[i] = t }
    return v128(r)
  }

  /// DPPD, staged as DPPS: the selected products, then their sum.
  func dppd(_ a: V128, _ s: V128, _ imm: Int) throws(Fault) -> V128 {
    var x = a
    var y = s
    for i in 0..<2 where (imm >> (4 + i)) & 1 == 0 {
      x[i] = 0
      y[i] = 0
    }
    let p = try sseFP(Int32(XF_MULPD), x, y)
    let t = try sseFP(Int32(XF_ADDSD), V128(p[0], 0), V128(p[1], 0))[0]
    return V128(imm & 1 != 0 ? t : 0, imm & 2 != 0 ? t : 0)
  }
}
