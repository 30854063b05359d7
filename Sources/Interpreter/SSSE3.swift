import X86

// SSSE3 (CPUID.1:ECX.SSSE3): 0F 38 00-0B, 1C-1E and 0F 3A 0F, each in an MMX
// (no prefix) and an XMM (66) form. The MMX form works on lane 0 of a V128.

/// Horizontal pairs over the concatenation of the low `n` elements of a and s:
/// result[i] = f(c[2i], c[2i+1]).
@inline(__always) func horizontal<T: SIMD>(
  _ a: T, _ s: T, _ n: Int, _ f: (T.Scalar, T.Scalar) -> T.Scalar
)
  -> T
{
  var r = T()
  let half = n / 2
  for i in 0..<half {
    r[i] = f(a[2 * i], a[2 * i + 1])
    r[half + i] = f(s[2 * i], s[2 * i + 1])
  }
  return r
}

@inline(__always) func sat16(_ v: Int32) -> Int16 { Int16(clamping: v) }

/// One SSSE3 operation on `n`-byte operands (8: MMX, 16: XMM); nil for #UD.
func ssse3Op(_ b: UInt8, _ a: V128, _ s: V128, _ n: Int, imm: Int) -> V128? {
  switch b {
  case 0x00:  // PSHUFB
    let x = a.u8
    let y = s.u8
    var r = SIMD16<UInt8>()
    for i in 0..<n where y[i] & 0x80 == 0 { r[i] = x[Int(y[i]) & (n - 1)] }
    return v128(r)
  case 0x01: return v128(horizontal(a.u16, s.u16, n / 2) { $0 &+ $1 })  // PHADDW
  case 0x02: return v128(horizontal(a.u32, s.u32, n / 4) { $0 &+ $1 })  // PHADDD
  case 0x03: return v128(horizontal(a.i16, s.i16, n / 2) { sat16(Int32($0) + Int32($1)) })
  case 0x05: return v128(horizontal(a.u16, s.u16, n / 2) { $0 &- $1 })  // PHSUBW
  case 0x06: return v128(horizontal(a.u32, s.u32, n / 4) { $0 &- $1 })  // PHSUBD
  case 0x07: return v128(horizontal(a.i16, s.i16, n / 2) { sat16(Int32($0) - Int32($1)) })
  case 0x04:  // PMADDUBSW: unsigned bytes of a times signed bytes of s, pairs added with saturation
    let x = a.u8
    let y = s.i8
    var r = SIMD8<Int16>()
    for i in 0..<(n / 2) {
      let lo = Int32(x[2 * i]) * Int32(y[2 * i])
      let hi = Int32(x[2 * i + 1]) * Int32(y[2 * i + 1])
      r[i] = sat16(lo + hi)
    }
    return v128(r)
  case 0x08, 0x09, 0x0A:  // PSIGNB/W/D
    func sign<T: SIMD>(_ x: T, _ y: T) -> T where T.Scalar: FixedWidthInteger & SignedInteger {
      var r = T()
      for i in 0..<T.scalarCount { r[i] = y[i] < 0 ? 0 &- x[i] : (y[i] == 0 ? 0 : x[i]) }
      return r
    }
    switch b {
    case 0x08: return v128(sign(a.i8, s.i8))
    case 0x09: return v128(sign(a.i16, s.i16))
    default: return v128(sign(a.i32, s.i32))
    }
  case 0x0B:  // PMULHRSW
    let p = SIMD8<Int32>(truncatingIfNeeded: a.i16) &* SIMD8<Int32>(truncatingIfNeeded: s.i16)
    return v128(SIMD8<Int16>(truncatingIfNeeded: ((p &>> 14) &+ 1) &>> 1))
  case 0x1C:  // PABSB
    return v128(
      SIMD16<UInt8>(truncatingIfNeeded: s.i8.replacing(with: 0 &- s.i8, where: s.i8 .< 0)))
  case 0x1D:
    return v128(
      SIMD8<UInt16>(truncatingIfNeeded: s.i16.replacing(with: 0 &- s.i16, where: s.i16 .< 0)))
  case 0x1E:
    return v128(
      SIMD4<UInt32>(truncatingIfNeeded: s.i32.replacing(with: 0 &- s.i32, where: s.i32 .< 0)))
  case 0x0F:  // PALIGNR: (a:s) shifted right by imm bytes, low n bytes
    if n == 8 {
      return byteShiftRight(V128(s[0], a[0]), UInt64(imm)) & V128(~0, 0)
    }
    if imm >= 32 { return V128(0, 0) }
    if imm >= 16 { return byteShiftRight(a, UInt64(imm - 16)) }
    return byteShiftRight(s, UInt64(imm)) | byteShiftLeft(a, UInt64(16 - imm))
  default:
    return nil
  }
}

extension InterpreterCPU {
  func ssse3(_ b: UInt8, _ p: SSEPrefix, _ imm: Int) throws(Fault) {
    if !hasSSSE3 { throw Fault.ud() }
    let d = modReg
    switch p {
    case .none:
      try mmxCheck()
      let s = modIsReg ? mmGetST(modRM) : try readMem(eaSeg, addr(), 8)
      guard let r = ssse3Op(b, V128(mmGetST(d), 0), V128(s, 0), 8, imm: imm) else {
        throw Fault.ud()
      }
      mmxTransition()
      mmSet(d, r[0])
    case .p66:
      try sseCheck()
      let s = try xmmRM(16, align: true)
      guard let r = ssse3Op(b, xmmGet(d), s, 16, imm: imm) else { throw Fault.ud() }
      xmmSet(d, r)
    default:
      throw Fault.ud()
    }
  }
}
