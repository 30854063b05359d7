// x86-64-v3 general-purpose forms: BMI1, BMI2 (VEX-encoded), LZCNT, TZCNT, MOVBE.

extension Asm {
  /// A three-byte VEX (C4) encoding: `map` 1 = 0F, 2 = 0F38, 3 = 0F3A; `pp` 0 none,
  /// 1 = 66, 2 = F3, 3 = F2; `vvvv` a register number (stored inverted).
  static func vex(
    map: Int, pp: Int, w: Bool, vvvv: Int, opcode: UInt8, reg: Int, rm: RMOperand,
    imm: [UInt8] = []
  ) -> Encoded {
    // Let the legacy encoder lay out ModRM/SIB/displacement, then swap its REX for VEX.
    let e = encode(size: 4, opcode: [opcode], reg: reg, rm: rm, imm: imm)
    var i = 0
    var pre: [UInt8] = []
    if e.bytes[i] == 0x67 {
      pre.append(0x67)
      i += 1
    }
    var rex: UInt8 = 0
    if e.bytes[i] & 0xF0 == 0x40 {
      rex = e.bytes[i]
      i += 1
    }
    let b1 =
      (rex & 4 == 0 ? 0x80 : 0) | (rex & 2 == 0 ? 0x40 : 0) | (rex & 1 == 0 ? 0x20 : 0)
      | UInt8(map)
    let b2 = (w ? 0x80 : 0) | UInt8((~vvvv & 0xF) << 3) | UInt8(pp)
    let out = pre + [0xC4, b1, b2] + e.bytes[i...]
    var r = Encoded(bytes: out, ripFixup: nil)
    if let f = e.ripFixup { r.ripFixup = (f.offset + out.count - e.bytes.count, f.target) }
    return r
  }
}

extension FormTable {
  func bmi() {
    let undefAP = Flag.af | Flag.pf
    // (name, map, pp, opcode, /digit or nil, operand order, flags defined, flags undefined)
    // order: 0 = reg, vvvv, r/m (ANDN, PDEP, PEXT, MULX); 1 = reg, r/m, vvvv (BEXTR, BZHI,
    // SHLX...); 2 = vvvv, r/m (BLSx).
    let forms: [(String, Int, Int, UInt8, Int?, Int, UInt64, UInt64)] = [
      ("andn", 2, 0, 0xF2, nil, 0, Flag.status & ~undefAP, undefAP),
      ("bextr", 2, 0, 0xF7, nil, 1, Flag.status & ~undefAP, undefAP | Flag.sf),
      ("blsr", 2, 0, 0xF3, 1, 2, Flag.status & ~undefAP, undefAP),
      ("blsmsk", 2, 0, 0xF3, 2, 2, Flag.status & ~undefAP, undefAP),
      ("blsi", 2, 0, 0xF3, 3, 2, Flag.status & ~undefAP, undefAP),
      ("bzhi", 2, 0, 0xF5, nil, 1, Flag.status & ~undefAP, undefAP),
      ("pdep", 2, 3, 0xF5, nil, 0, 0, 0),
      ("pext", 2, 2, 0xF5, nil, 0, 0, 0),
      ("mulx", 2, 3, 0xF6, nil, 0, 0, 0),
      ("shlx", 2, 1, 0xF7, nil, 1, 0, 0),
      ("sarx", 2, 2, 0xF7, nil, 1, 0, 0),
      ("shrx", 2, 3, 0xF7, nil, 1, 0, 0),
    ]
    for (n, map, pp, op, digit, order, def, undef) in forms {
      for size in [4, 8] {
        let b = String(size * 8)
        let shape =
          order == 2
          ? "r\(b), r/m\(b)" : (order == 0 ? "r\(b), r\(b), r/m\(b)" : "r\(b), r/m\(b), r\(b)")
        add("\(n) \(shape)") { g in
          let dst = g.pickDest()
          let v = order == 2 ? dst : g.pickSrc()
          var other = -1
          if n == "mulx" { other = g.pickDest() }  // the low half goes to vvvv
          let rm = g.rmOperand(size: size, write: false)
          let vreg = n == "mulx" ? other : v
          g.emit(
            Asm.vex(
              map: map, pp: pp, w: size == 8, vvvv: vreg, opcode: op, reg: digit ?? dst, rm: rm))
          g.written(dst)
          if other >= 0 { g.written(other) }
          if def != 0 || undef != 0 { g.flags(defined: def, undefined: undef) }
          return true
        }
      }
    }
    for size in [4, 8] {
      add("rorx r\(size * 8), r/m\(size * 8), imm8") { g in
        let dst = g.pickDest()
        let rm = g.rmOperand(size: size, write: false)
        let imm = UInt8(truncatingIfNeeded: g.rng.next())
        g.emit(
          Asm.vex(map: 3, pp: 3, w: size == 8, vvvv: 0, opcode: 0xF0, reg: dst, rm: rm, imm: [imm]))
        g.written(dst)
        return true
      }
    }
    for size in [2, 4, 8] {
      for (n, op) in [("lzcnt", UInt8(0xBD)), ("tzcnt", 0xBC)] {
        add("\(n) r\(size * 8), r/m\(size * 8)") { g in
          let dst = g.pickDest()
          let rm = g.rmOperand(size: size, write: false)
          g.emit(Asm.encode(prefixes: [0xF3], size: size, opcode: [0x0F, op], reg: dst, rm: rm))
          g.written(dst)
          g.flags(defined: Flag.cf | Flag.zf, undefined: Flag.status & ~(Flag.cf | Flag.zf))
          return true
        }
      }
      add("movbe r\(size * 8), m\(size * 8)") { g in
        let dst = g.pickDest()
        g.emit(
          Asm.encode(
            size: size, opcode: [0x0F, 0x38, 0xF0], reg: dst, rm: .mem(g.memOperand(size: size))))
        g.written(dst)
        return true
      }
      add("movbe m\(size * 8), r\(size * 8)") { g in
        g.emit(
          Asm.encode(
            size: size, opcode: [0x0F, 0x38, 0xF1], reg: g.pickSrc(),
            rm: .mem(g.memOperand(size: size))))
        return true
      }
    }
  }
}
