import CNativeExec

/// The x87/MMX/SSE part of a case: an FXSAVE image loaded before the snippet
/// (FXRSTOR natively, `setFXImage` in the interpreter) and compared after it.
/// Initial values come from their own generator (seeded from the case seed),
/// so the integer forms' random streams are unchanged.
public enum FX {
  static let f32Edges: [UInt32] = [
    0x0000_0000, 0x8000_0000, 0x3F80_0000, 0xBF80_0000, 0x3FC0_0000, 0x3F00_0000, 0x0080_0000,
    0x8080_0000, 0x0000_0001, 0x007F_FFFF, 0x807F_FFFF, 0x7F7F_FFFF, 0xFF7F_FFFF, 0x7F80_0000,
    0xFF80_0000, 0x7FC0_0000, 0xFFC0_0000, 0x7FC1_2345, 0x7F80_0001, 0x7FA0_0000, 0xFF81_2345,
    0x4F00_0000, 0xCF00_0000, 0x4EFF_FFFF, 0x5F00_0000, 0xDF00_0000, 0x5EFF_FFFF, 0x3F7F_FFFF,
    0x4020_0000, 0x4060_0000, 0xBFC0_0000, 0x4B00_0000, 0x3380_0000, 0x0C00_0000, 0x7200_0000,
    0x0040_0000, 0x4700_0000, 0xC700_0000, 0x46FF_FE00, 0xC700_0100,
  ]
  static let f64Edges: [UInt64] = [
    0, 0x8000_0000_0000_0000, 0x3FF0_0000_0000_0000, 0xBFF0_0000_0000_0000,
    0x3FF8_0000_0000_0000, 0x3FE0_0000_0000_0000, 0x0010_0000_0000_0000, 0x8010_0000_0000_0000,
    1, 0x000F_FFFF_FFFF_FFFF, 0x800F_FFFF_FFFF_FFFF, 0x7FEF_FFFF_FFFF_FFFF, 0xFFEF_FFFF_FFFF_FFFF,
    0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000, 0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0000,
    0x7FF8_0000_1234_5678, 0x7FF0_0000_0000_0001, 0x7FF4_0000_0000_0000, 0xFFF0_0000_8765_4321,
    0x41E0_0000_0000_0000, 0xC1E0_0000_0000_0000, 0x41DF_FFFF_FFC0_0000, 0x41E0_0000_0010_0000,
    0xC1E0_0000_0020_0000, 0x43E0_0000_0000_0000, 0xC3E0_0000_0000_0000, 0x43DF_FFFF_FFFF_FFFF,
    0x3FEF_FFFF_FFFF_FFFF, 0x4004_0000_0000_0000, 0x400C_0000_0000_0000, 0x4330_0000_0000_0000,
    0x3CA0_0000_0000_0000, 0x3690_0000_0000_0000, 0x47F0_0000_0000_0000, 0x47EF_FFFF_F000_0000,
    0x3810_0000_0000_0000, 0x380F_FFFF_F000_0000, 0x36A0_0000_0000_0000, 0x40DF_FFC0_0000_0000,
    0xC0E0_0000_0000_0000, 0x3FF0_0000_1000_0000, 0x3FF0_0000_0800_0000,
  ]
  /// (significand, sign+exponent)
  static let f80Edges: [(UInt64, UInt16)] = [
    (0, 0), (0, 0x8000), (1 << 63, 0x3FFF), (1 << 63, 0xBFFF), (0xC000_0000_0000_0000, 0x3FFF),
    (1 << 63, 0x3FFE), (~0, 0x7FFE), (~0, 0xFFFE), (1 << 63, 0x0001), (1, 0), (0x7FFF_FFFF, 0x8000),
    (1 << 63, 0), (1 << 63, 0x7FFF), (1 << 63, 0xFFFF), (0xC000_0000_0000_0000, 0x7FFF),
    (0xC000_0000_0000_0000, 0xFFFF), (0x8000_0000_0000_0001, 0x7FFF),
    (0xA000_0000_0000_0000, 0x7FFF),
    (0x4000_0000_0000_0000, 0x3FFF), (0, 0x7FFF), (1 << 63, 0x403E), (1 << 63, 0xC03E),
    (1 << 63, 0x401E), (1 << 63, 0xC01E), (1 << 63, 0x400E), (0xFFFF_FFFF_FFFF_F800, 0x403D),
    (0xC90F_DAA2_2168_C235, 0x4000), (0xB172_17F7_D1CF_79AC, 0x3FFE), (1 << 63, 0x4400),
    (1 << 63, 0x3BFF), (0xFFFF_FFFF_FFFF_FFFF, 0x3FFF), (0x8000_0000_0000_0400, 0x3FFF),
    (0xA000_0000_0000_0000, 0x4000), (0xE000_0000_0000_0000, 0x4000), (1 << 63, 0x3C01),
    (1 << 63, 0x43FE),
  ]

  static func f32(_ r: inout SplitMix) -> UInt32 {
    switch r.below(10) {
    case 0...4: return r.pick(f32Edges)
    case 5: return 0x3F80_0000 | UInt32(truncatingIfNeeded: r.next() & 0x7F_FFFF)  // [1, 2)
    case 6:
      // Near the int32/int64 limits and rounding ties.
      let base = r.pick(
        [0x4EFF_FFFF, 0x4F00_0000, 0x5EFF_FFFF, 0x5F00_0000, 0x3F00_0000] as [UInt32])
      return (base &+ UInt32(r.below(5)) &- 2) | (r.chance(50) ? 0x8000_0000 : 0)
    default: return UInt32(truncatingIfNeeded: r.next())
    }
  }

  static func f64(_ r: inout SplitMix) -> UInt64 {
    switch r.below(10) {
    case 0...4: return r.pick(f64Edges)
    case 5: return 0x3FF0_0000_0000_0000 | (r.next() & 0xF_FFFF_FFFF_FFFF)
    case 6:
      let base = r.pick(
        [
          0x41DF_FFFF_FFC0_0000, 0x41E0_0000_0000_0000, 0x43DF_FFFF_FFFF_FFFF,
          0x43E0_0000_0000_0000,
          0x3FE0_0000_0000_0000, 0x3FF8_0000_0000_0000,
        ] as [UInt64])
      return (base &+ UInt64(r.below(5)) &- 2) | (r.chance(50) ? 0x8000_0000_0000_0000 : 0)
    case 7:
      // A double that is a float with a few extra bits (CVTSD2SS rounding).
      let f = UInt64(f32(&r))
      return ((f & 0x8000_0000) << 32) | (((f >> 23) & 0xFF) &+ 896) << 52 | (f & 0x7F_FFFF) << 29
        | (r.next() & 0x1FFF_FFFF)
    default: return r.next()
    }
  }

  static func f80(_ r: inout SplitMix) -> (UInt64, UInt16) {
    switch r.below(10) {
    case 0...5: return r.pick(f80Edges)
    case 6:
      return (r.next() | (1 << 63), UInt16(0x3FF0 + r.below(32)) | (r.chance(50) ? 0x8000 : 0))
    default:
      return (
        r.next() | (1 << 63),
        UInt16(truncatingIfNeeded: r.next() & 0x7FFF) | (r.chance(30) ? 0x8000 : 0)
      )
    }
  }

  static func int64(_ r: inout SplitMix) -> UInt64 {
    switch r.below(6) {
    case 0: return r.pick(Gen.edges)
    case 1: return UInt64(bitPattern: Int64(r.below(2001) - 1000))
    case 2:
      // Byte/word patterns: 00, 80, FF, 7F lanes (PCMPEQ, saturation, PMOVMSKB).
      var v: UInt64 = 0
      for k in 0..<8 {
        v |= UInt64(r.pick([0x00, 0x80, 0xFF, 0x7F, 0x01, 0xFE] as [UInt8])) << (8 * UInt64(k))
      }
      return v
    default: return r.next()
    }
  }

  /// A 128-bit value: four floats, two doubles, integer patterns or random bits.
  static func xmmValue(_ r: inout SplitMix) -> (UInt64, UInt64) {
    switch r.below(20) {
    case 0...6:
      return (UInt64(f32(&r)) | UInt64(f32(&r)) << 32, UInt64(f32(&r)) | UInt64(f32(&r)) << 32)
    case 7...13: return (f64(&r), f64(&r))
    case 14...17: return (int64(&r), int64(&r))
    default: return (r.next(), r.next())
    }
  }

  static func mxcsr(_ r: inout SplitMix) -> UInt32 {
    switch r.below(20) {
    case 0...11: return 0x1F80
    case 12...16:
      return 0x1F80 | UInt32(r.below(4)) << 13 | (r.chance(30) ? 0x8000 : 0)
        | (r.chance(30) ? 0x40 : 0)
    case 17:
      return 0x1F80 | UInt32(truncatingIfNeeded: r.next() & 0x3F)
    default:
      // Some exceptions unmasked: #XM. Not overflow or underflow: the
      // interpreter does not compute the precision flag of the unbounded-
      // exponent result that those report (docs/DIFFTEST.md).
      let unmaskable: [UInt32] = [7, 8, 9, 12]
      var m: UInt32 = 0x1F80
      m &= ~(UInt32(1) << r.pick(unmaskable))
      if r.chance(30) { m &= ~(UInt32(1) << r.pick(unmaskable)) }
      return m | UInt32(r.below(4)) << 13 | (r.chance(20) ? 0x8040 : 0)
    }
  }

  /// The initial FXSAVE image of a case.
  public static func initialImage(seed: UInt64) -> [UInt8] {
    var r = SplitMix(seed ^ 0x5EE5_F00D_F1F0_7A11)
    var b = [UInt8](repeating: 0, count: 512)
    func put(_ off: Int, _ v: UInt64, _ n: Int) {
      for k in 0..<n { b[off + k] = UInt8(truncatingIfNeeded: v >> UInt64(8 * k)) }
    }
    // x87: control word (rounding/precision varied, rarely an unmasked exception).
    var cw: UInt64 = 0x37F
    switch r.below(20) {
    case 0...13: break
    case 14...18: cw = 0x7F | UInt64(r.below(4)) << 10 | UInt64(r.pick([0, 2, 3] as [Int])) << 8
    default: cw = 0x37F & ~(UInt64(1) << UInt64(r.below(6)))
    }
    let top = r.chance(50) ? 0 : r.below(8)
    let used = r.pick([0, 0, 1, 2, 2, 3, 4, 8] as [Int])
    var tw: UInt64 = 0
    for i in 0..<used { tw |= 1 << UInt64((top + i) & 7) }
    let sticky: UInt64 = cw & 0x3F == 0x3F && r.chance(20) ? UInt64(r.below(64)) : 0
    put(0, cw, 2)
    put(2, UInt64(top) << 11 | sticky, 2)
    put(4, tw, 1)
    put(24, UInt64(mxcsr(&r)), 4)
    put(28, 0xFFFF, 4)
    for i in 0..<8 {
      let v = f80(&r)
      put(32 + i * 16, v.0, 8)
      put(40 + i * 16, UInt64(v.1), 2)
    }
    for i in 0..<16 {
      let v = xmmValue(&r)
      put(160 + i * 16, v.0, 8)
      put(168 + i * 16, v.1, 8)
    }
    return b
  }

  /// Differences between two FXSAVE images: XMM0-15, MXCSR, FCW, FSW (minus
  /// `fswUndefined`), the abridged tag word and ST0-7 (80 bits each).
  /// FOP/FIP/FDP are not compared (the interpreter does not track them).
  public static func compare(native n: [UInt8], interpreter i: [UInt8], fswUndefined: UInt16)
    -> [String]
  {
    guard n.count >= 416, i.count >= 416 else { return [] }
    var out: [String] = []
    func get(_ b: [UInt8], _ off: Int, _ c: Int) -> UInt64 {
      var v: UInt64 = 0
      for k in 0..<c { v |= UInt64(b[off + k]) << UInt64(8 * k) }
      return v
    }
    func hex(_ v: UInt64, _ w: Int) -> String {
      let s = String(v, radix: 16)
      return "0x" + String(repeating: "0", count: max(0, w - s.count)) + s
    }
    for r in 0..<16 {
      let o = 160 + r * 16
      let a = (get(n, o + 8, 8), get(n, o, 8))
      let b = (get(i, o + 8, 8), get(i, o, 8))
      if a != b {
        out.append(
          "xmm\(r): native \(hex(a.0, 16))_\(hex(a.1, 16).dropFirst(2)), interpreter \(hex(b.0, 16))_\(hex(b.1, 16).dropFirst(2))"
        )
      }
    }
    let mn = get(n, 24, 4)
    let mi = get(i, 24, 4)
    if mn != mi { out.append("mxcsr: native \(hex(mn, 4)), interpreter \(hex(mi, 4))") }
    let cn = get(n, 0, 2)
    let ci = get(i, 0, 2)
    if cn != ci { out.append("fcw: native \(hex(cn, 4)), interpreter \(hex(ci, 4))") }
    let m = ~UInt64(fswUndefined) & 0xFFFF
    let sn = get(n, 2, 2) & m
    let si = get(i, 2, 2) & m
    if sn != si {
      out.append(
        "fsw: native \(hex(sn, 4)), interpreter \(hex(si, 4)) (compared mask \(hex(m, 4)))")
    }
    let tn = get(n, 4, 1)
    let ti = get(i, 4, 1)
    if tn != ti { out.append("ftw (abridged): native \(hex(tn, 2)), interpreter \(hex(ti, 2))") }
    for r in 0..<8 {
      let o = 32 + r * 16
      let a = (get(n, o + 8, 2), get(n, o, 8))
      let b = (get(i, o + 8, 2), get(i, o, 8))
      if a != b {
        out.append(
          "st\(r): native \(hex(a.0, 4)):\(hex(a.1, 16)), interpreter \(hex(b.0, 4)):\(hex(b.1, 16))"
        )
      }
    }
    return out
  }
}
