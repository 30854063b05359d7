import X86

// VEX-encoded general-purpose instructions: BMI1 (ANDN, BEXTR, BLSI, BLSMSK,
// BLSR) and BMI2 (BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX). AVX is not
// implemented: every other VEX instruction raises #UD.

extension InterpreterCPU {
  /// C4/C5 start a VEX prefix in 64-bit mode, and elsewhere when the next byte
  /// has ModRM.mod = 11 (which LES/LDS cannot have).
  @inline(__always) func isVEX() throws(Fault) -> Bool {
    if mode64 { return true }
    let next = try fetch8()
    ipos -= 1
    return next >= 0xC0
  }

  func execVEX(_ b: UInt8) throws(Fault) {
    // VEX is #UD in real and virtual-8086 mode, and after REX, 66, F2, F3 or LOCK.
    if !protectedMode || rfl & RFLAGS.vm != 0 { throw Fault.ud() }
    if rex != 0 || has66 || rep != 0 || lockPrefix { throw Fault.ud() }
    let b1 = try fetch8()
    var map = 1
    var w = false
    let r, x, bb: UInt8
    let p2: UInt8
    if b == 0xC5 {
      r = ~b1 >> 7 & 1
      x = 0
      bb = 0
      p2 = b1
    } else {
      r = ~b1 >> 7 & 1
      x = ~b1 >> 6 & 1
      bb = ~b1 >> 5 & 1
      map = Int(b1 & 0x1F)
      p2 = try fetch8()
      w = p2 & 0x80 != 0
    }
    var vvvv = Int(~p2 >> 3 & 0xF)
    let l = p2 >> 2 & 1
    let pp = p2 & 3
    if mode64 {
      rex = 0x40 | (w ? 8 : 0) | r << 2 | x << 1 | bb
    } else {
      vvvv &= 7
    }
    let op = try fetch8()
    try decodeModRM()
    let s = w && mode64 ? 8 : 4
    opSize = s
    let bits = UInt64(s * 8)
    let m = sizeMask(s)
    if l != 0 { throw Fault.ud() }
    switch (map, op, pp) {
    case (2, 0xF2, 0):  // ANDN r, vvvv, r/m
      if !hasBMI1 { throw Fault.ud() }
      let v = ~getReg(vvvv, s) & (try readE(s)) & m
      setReg(modReg, s, v)
      setStatus(szFlags(v, s))
    case (2, 0xF3, 0):  // BLSR / BLSMSK / BLSI vvvv, r/m
      if !hasBMI1 { throw Fault.ud() }
      let src = try readE(s)
      let v: UInt64
      var f: UInt64
      switch modReg & 7 {
      case 1:
        v = (src &- 1) & src & m
        f = szFlags(v, s) | (src == 0 ? RFLAGS.cf : 0)
      case 2:
        v = ((src &- 1) ^ src) & m
        f = (szFlags(v, s) & ~RFLAGS.zf) | (src == 0 ? RFLAGS.cf : 0)
      case 3:
        v = (0 &- src) & src & m
        f = szFlags(v, s) | (src != 0 ? RFLAGS.cf : 0)
      default: throw Fault.ud()
      }
      setReg(vvvv, s, v)
      setStatus(f)
    case (2, 0xF7, 0):  // BEXTR r, r/m, vvvv
      if !hasBMI1 { throw Fault.ud() }
      let src = try readE(s)
      let ctl = getReg(vvvv, s)
      let start = ctl & 0xFF
      let len = (ctl >> 8) & 0xFF
      var v = start >= bits ? 0 : src >> start
      if len < bits { v &= (1 << len) &- 1 }
      setReg(modReg, s, v)
      setStatus(v == 0 ? RFLAGS.zf : 0)
    case (2, 0xF5, 0):  // BZHI r, r/m, vvvv
      if !hasBMI2 { throw Fault.ud() }
      let src = try readE(s)
      let n = getReg(vvvv, s) & 0xFF
      let v = n < bits ? src & ((1 << n) &- 1) : src
      setReg(modReg, s, v)
      setStatus(szFlags(v, s) | (n > bits - 1 ? RFLAGS.cf : 0))
    case (2, 0xF5, 3), (2, 0xF5, 2):  // PDEP / PEXT r, vvvv, r/m
      if !hasBMI2 { throw Fault.ud() }
      let maskBits = try readE(s)
      let src = getReg(vvvv, s)
      var v: UInt64 = 0
      var k: UInt64 = 0
      for i in 0..<bits where (maskBits >> i) & 1 != 0 {
        if pp == 3 {
          v |= ((src >> k) & 1) << i
        } else {
          v |= ((src >> i) & 1) << k
        }
        k += 1
      }
      setReg(modReg, s, v)
    case (2, 0xF6, 3):  // MULX r(high), vvvv(low), r/m: RDX times r/m, flags unchanged
      if !hasBMI2 { throw Fault.ud() }
      let a = try readE(s)
      let d = getReg(2, s)
      let (hi, lo): (UInt64, UInt64)
      if s == 8 {
        let p = d.multipliedFullWidth(by: a)
        (hi, lo) = (p.high, p.low)
      } else {
        let p = d &* a
        (hi, lo) = (p >> 32, p & 0xFFFF_FFFF)
      }
      setReg(vvvv, s, lo)
      setReg(modReg, s, hi)  // written last: the high half wins when both are one register
    case (2, 0xF7, 1), (2, 0xF7, 2), (2, 0xF7, 3):  // SHLX / SARX / SHRX r, r/m, vvvv
      if !hasBMI2 { throw Fault.ud() }
      let src = try readE(s)
      let c = getReg(vvvv, s) & (bits - 1)
      let v: UInt64
      switch pp {
      case 1: v = (src << c) & m
      case 2: v = UInt64(bitPattern: Int64(bitPattern: sext(src, s)) >> Int64(c)) & m
      default: v = src >> c
      }
      setReg(modReg, s, v)
    case (3, 0xF0, 3):  // RORX r, r/m, imm8
      if !hasBMI2 || vvvv != 0 { throw Fault.ud() }  // VEX.vvvv must be 1111b (unused)
      let c = UInt64(try fetch8()) & (bits - 1)
      let src = try readE(s)
      let v = c == 0 ? src : ((src >> c) | (src << (bits - c))) & m
      setReg(modReg, s, v)
    default:
      throw Fault.ud()  // AVX and the rest of the VEX space
    }
  }

  /// SF and ZF of a result, with CF, OF (and AF, PF: undefined for BMI) clear.
  @inline(__always) func szFlags(_ v: UInt64, _ s: Int) -> UInt64 {
    (v == 0 ? RFLAGS.zf : 0) | (v >> UInt64(s * 8 - 1) & 1 != 0 ? RFLAGS.sf : 0)
  }
}
