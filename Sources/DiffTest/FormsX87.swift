// x87 forms. The stack, tags, control word and register values come from the
// case's FXSAVE image; FNSTENV/FNSAVE/FLDENV/FRSTOR are not generated (the
// interpreter does not track FIP/FDP/FOP, which they store).

extension FormTable {
  /// C0, C2 and C3 after an instruction that the SDM leaves them undefined for.
  static let ccUndefined: UInt16 = 0x4500

  func x87Reg(_ name: String, _ op: [UInt8], anyI: Bool, defines: Bool = false, flags: Bool = false)
  {
    add(name) { g in
      var b = op
      if anyI { b[b.count - 1] |= UInt8(g.rng.below(8)) }
      if flags {
        g.needFlags(0)
        g.flags(defined: Flag.status)
      }
      if !defines { g.fswUndefined |= FormTable.ccUndefined }
      g.emit(Encoded(bytes: b, ripFixup: nil))
      return true
    }
  }

  func x87Mem(
    _ name: String, _ op: UInt8, digit: Int, size: Int, kind: FPKind, defines: Bool = false
  ) {
    add(name) { g in
      let rm = FormTable.fpMem(g, size: size, kind: kind)
      if !defines { g.fswUndefined |= FormTable.ccUndefined }
      g.emit(Asm.encode(size: 4, opcode: [op], reg: digit, rm: rm))
      return true
    }
  }

  func x87() {
    let ar = ["fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"]
    for d in 0..<8 {
      let cmp = d == 2 || d == 3
      x87Reg("\(ar[d]) st0, st(i)", [0xD8, UInt8(0xC0 + d * 8)], anyI: true, defines: cmp)
      if !cmp {
        let rev = ["fadd", "fmul", "", "", "fsubr", "fsub", "fdivr", "fdiv"][d]
        x87Reg("\(rev) st(i), st0", [0xDC, UInt8(0xC0 + d * 8)], anyI: true)
        x87Reg("\(rev)p st(i), st0", [0xDE, UInt8(0xC0 + d * 8)], anyI: true)
      }
      x87Mem("\(ar[d]) m32fp", 0xD8, digit: d, size: 4, kind: .f32, defines: cmp)
      x87Mem("\(ar[d]) m64fp", 0xDC, digit: d, size: 8, kind: .f64, defines: cmp)
      x87Mem("fi\(ar[d].dropFirst()) m32int", 0xDA, digit: d, size: 4, kind: .i32, defines: cmp)
      x87Mem("fi\(ar[d].dropFirst()) m16int", 0xDE, digit: d, size: 2, kind: .i16, defines: cmp)
    }
    x87Reg("fcompp", [0xDE, 0xD9], anyI: false, defines: true)
    x87Reg("fucompp", [0xDA, 0xE9], anyI: false, defines: true)
    x87Reg("fucom st(i)", [0xDD, 0xE0], anyI: true, defines: true)
    x87Reg("fucomp st(i)", [0xDD, 0xE8], anyI: true, defines: true)
    x87Reg("fcomi st0, st(i)", [0xDB, 0xF0], anyI: true, defines: true, flags: true)
    x87Reg("fucomi st0, st(i)", [0xDB, 0xE8], anyI: true, defines: true, flags: true)
    x87Reg("fcomip st0, st(i)", [0xDF, 0xF0], anyI: true, defines: true, flags: true)
    x87Reg("fucomip st0, st(i)", [0xDF, 0xE8], anyI: true, defines: true, flags: true)
    x87Reg("fld st(i)", [0xD9, 0xC0], anyI: true)
    x87Reg("fxch st(i)", [0xD9, 0xC8], anyI: true)
    x87Reg("fst st(i)", [0xDD, 0xD0], anyI: true)
    x87Reg("fstp st(i)", [0xDD, 0xD8], anyI: true)
    x87Reg("ffree st(i)", [0xDD, 0xC0], anyI: true)
    x87Reg("fnop", [0xD9, 0xD0], anyI: false)
    let d9: [(String, UInt8, Bool)] = [
      ("fchs", 0xE0, false), ("fabs", 0xE1, false), ("ftst", 0xE4, true), ("fxam", 0xE5, true),
      ("fld1", 0xE8, false), ("fldl2t", 0xE9, false), ("fldl2e", 0xEA, false),
      ("fldpi", 0xEB, false), ("fldlg2", 0xEC, false), ("fldln2", 0xED, false),
      ("fldz", 0xEE, false), ("f2xm1", 0xF0, false), ("fyl2x", 0xF1, false),
      ("fptan", 0xF2, false), ("fpatan", 0xF3, false), ("fxtract", 0xF4, false),
      ("fprem1", 0xF5, true), ("fdecstp", 0xF6, false), ("fincstp", 0xF7, false),
      ("fprem", 0xF8, true), ("fyl2xp1", 0xF9, false), ("fsqrt", 0xFA, false),
      ("fsincos", 0xFB, false), ("frndint", 0xFC, false), ("fscale", 0xFD, false),
      ("fsin", 0xFE, false), ("fcos", 0xFF, false),
    ]
    for (n, b, def) in d9 { x87Reg(n, [0xD9, b], anyI: false, defines: def) }
    let cm = ["b", "e", "be", "u"]
    for k in 0..<4 {
      add("fcmov\(cm[k]) st0, st(i)") { g in
        g.needFlags(Flag.cf | Flag.zf | Flag.pf)
        g.fswUndefined |= FormTable.ccUndefined
        g.emit(Encoded(bytes: [0xDA, UInt8(0xC0 + k * 8 + g.rng.below(8))], ripFixup: nil))
        return true
      }
      add("fcmovn\(cm[k]) st0, st(i)") { g in
        g.needFlags(Flag.cf | Flag.zf | Flag.pf)
        g.fswUndefined |= FormTable.ccUndefined
        g.emit(Encoded(bytes: [0xDB, UInt8(0xC0 + k * 8 + g.rng.below(8))], ripFixup: nil))
        return true
      }
    }
    x87Reg("fnclex", [0xDB, 0xE2], anyI: false)
    x87Reg("fninit", [0xDB, 0xE3], anyI: false, defines: true)
    add("fnstsw ax") { g in
      g.emit(Encoded(bytes: [0xDF, 0xE0], ripFixup: nil))
      g.written(0)
      return true
    }
    add("fwait") { g in
      g.emit(Encoded(bytes: [0x9B], ripFixup: nil))
      return true
    }
    x87Mem("fld m32fp", 0xD9, digit: 0, size: 4, kind: .f32)
    x87Mem("fst m32fp", 0xD9, digit: 2, size: 4, kind: .f32)
    x87Mem("fstp m32fp", 0xD9, digit: 3, size: 4, kind: .f32)
    x87Mem("fld m64fp", 0xDD, digit: 0, size: 8, kind: .f64)
    x87Mem("fst m64fp", 0xDD, digit: 2, size: 8, kind: .f64)
    x87Mem("fstp m64fp", 0xDD, digit: 3, size: 8, kind: .f64)
    x87Mem("fld m80fp", 0xDB, digit: 5, size: 10, kind: .f80)
    x87Mem("fstp m80fp", 0xDB, digit: 7, size: 10, kind: .f80)
    x87Mem("fild m16int", 0xDF, digit: 0, size: 2, kind: .i16)
    x87Mem("fild m32int", 0xDB, digit: 0, size: 4, kind: .i32)
    x87Mem("fild m64int", 0xDF, digit: 5, size: 8, kind: .i64)
    x87Mem("fist m16int", 0xDF, digit: 2, size: 2, kind: .i16)
    x87Mem("fist m32int", 0xDB, digit: 2, size: 4, kind: .i32)
    x87Mem("fistp m16int", 0xDF, digit: 3, size: 2, kind: .i16)
    x87Mem("fistp m32int", 0xDB, digit: 3, size: 4, kind: .i32)
    x87Mem("fistp m64int", 0xDF, digit: 7, size: 8, kind: .i64)
    x87Mem("fisttp m16int", 0xDF, digit: 1, size: 2, kind: .i16)
    x87Mem("fisttp m32int", 0xDB, digit: 1, size: 4, kind: .i32)
    x87Mem("fisttp m64int", 0xDD, digit: 1, size: 8, kind: .i64)
    x87Mem("fnstcw m16", 0xD9, digit: 7, size: 2, kind: .i16, defines: true)
    x87Mem("fnstsw m16", 0xDD, digit: 7, size: 2, kind: .i16, defines: true)
    add("fldcw m16") { g in
      let m = g.memOperand(size: 2, align: 2, patch: false)
      var cw: UInt64 =
        0x37F | UInt64(g.rng.below(4)) << 10 | UInt64(g.rng.pick([0, 2, 3] as [Int])) << 8
      if g.rng.chance(10) { cw &= ~(UInt64(1) << UInt64(g.rng.below(6))) }
      if g.rng.chance(10) { cw = g.rng.next() & 0xFFFF }
      if m.target & 7 <= 6 { FormTable.fpPatchRaw(g, m.target, cw, size: 2) }
      g.emit(Asm.encode(size: 4, opcode: [0xD9], reg: 5, rm: .mem(m)))
      return true
    }
  }
}
