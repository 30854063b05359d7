// SSE/SSE2, MMX and x87 forms. Registers start from the case's FXSAVE image
// (FXState.swift: FP edge values in every XMM and x87 register, varied MXCSR
// and FCW); memory operands are patched with FP edge values of the operand's
// type.

extension FormTable {
  enum FPKind { case f32, f64, f80, int, i16, i32, i64, str }

  /// Patches the qwords covering [a, a+size) with edge values of `kind`.
  static func fpPatch(_ g: Gen, _ a: UInt64, size: Int, kind: FPKind) {
    guard g.rng.chance(85) else { return }
    var bytes: [UInt8] = []
    func add(_ v: UInt64, _ n: Int) {
      for k in 0..<n { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * k))) }
    }
    while bytes.count < size {
      switch kind {
      case .f32: add(UInt64(FX.f32(&g.rng)), 4)
      case .f64: add(FX.f64(&g.rng), 8)
      case .f80:
        let v = FX.f80(&g.rng)
        add(v.0, 8)
        add(UInt64(v.1), 2)
      case .int: add(FX.int64(&g.rng), 8)
      case .i16: add(UInt64(bitPattern: Int64(Int16(truncatingIfNeeded: FX.int64(&g.rng)))), 2)
      case .i32: add(FX.int64(&g.rng), 4)
      case .i64: add(FX.int64(&g.rng), 8)
      case .str: add(FormTable.stringByte(&g.rng), 1)
      }
    }
    let first = a & ~7
    let last = (a + UInt64(size) - 1) & ~7
    var q = first
    while q <= last {
      guard g.patches.count < Layout.maxPatches, !g.patched.contains(q),
        q >= Layout.data, q + 8 <= Layout.data + Layout.dataSize
      else { return }
      var v: UInt64 = 0
      for k in 0..<8 {
        let addr = q + UInt64(k)
        let byte: UInt64
        if addr >= a && addr < a + UInt64(size) {
          byte = UInt64(bytes[Int(addr - a)])
        } else {
          byte = g.rng.next() & 0xFF
        }
        v |= byte << UInt64(8 * k)
      }
      g.patched.insert(q)
      g.patches.append((q, v))
      q += 8
    }
  }

  /// A memory operand of `size` bytes (aligned to min(size, 16) mostly) patched with `kind`.
  static func fpMem(_ g: Gen, size: Int, kind: FPKind) -> RMOperand {
    let m = g.memOperand(size: size, align: min(size, 16), patch: false)
    fpPatch(g, m.target, size: size, kind: kind)
    return .mem(m)
  }

  enum Opnd { case xmm, mm, gpr32, gpr64 }

  /// A generic two-operand SIMD form: reg field `regKind`, r/m field
  /// `rmKind` or memory of `mem` bytes (0: register only; -1: memory only).
  func simd(
    _ name: String, _ pfx: [UInt8], _ op: [UInt8], reg regKind: Opnd = .xmm,
    rm rmKind: Opnd = .xmm, mem: Int, kind: FPKind, imm: Int = -1, store: Bool = false,
    w: Bool = false, flags: Bool = false, immValues: [UInt8]? = nil, immDigit: Int? = nil
  ) {
    add(name) { g in
      let regN: Int
      switch regKind {
      case .xmm: regN = g.rng.below(16)
      case .mm: regN = g.rng.below(8)
      case .gpr32, .gpr64: regN = store ? g.pickSrc() : g.pickDest()
      }
      var rm: RMOperand
      let useMem = mem < 0 || (mem > 0 && g.rng.chance(45))
      if useMem {
        rm = FormTable.fpMem(g, size: abs(mem), kind: kind)
      } else {
        switch rmKind {
        case .xmm: rm = .reg(g.rng.below(16))
        case .mm: rm = .reg(g.rng.below(8))
        case .gpr32, .gpr64: rm = .reg(store ? g.pickDest() : g.pickSrc())
        }
      }
      var immBytes: [UInt8] = []
      if imm >= 0 {
        if let vs = immValues, g.rng.chance(60) {
          immBytes = [g.rng.pick(vs)]
        } else {
          immBytes = [UInt8(truncatingIfNeeded: g.rng.next())]
        }
      }
      g.emit(
        Asm.encode(
          prefixes: pfx, size: w ? 8 : 4, opcode: op, reg: immDigit ?? regN, rm: rm, imm: immBytes))
      if !store, regKind == .gpr32 || regKind == .gpr64 { g.written(regN) }
      if store, rmKind == .gpr32 || rmKind == .gpr64, case .reg(let r) = rm { g.written(r) }
      if flags { g.flags(defined: Flag.status) }
      return true
    }
  }

  func sse() {
    // Data movement.
    simd("movups xmm, xmm/m128", [], [0x0F, 0x10], mem: 16, kind: .f32)
    simd("movupd xmm, xmm/m128", [0x66], [0x0F, 0x10], mem: 16, kind: .f64)
    simd("movss xmm, xmm/m32", [0xF3], [0x0F, 0x10], mem: 4, kind: .f32)
    simd("movsd xmm, xmm/m64", [0xF2], [0x0F, 0x10], mem: 8, kind: .f64)
    simd("movups xmm/m128, xmm", [], [0x0F, 0x11], mem: 16, kind: .f32)
    simd("movupd xmm/m128, xmm", [0x66], [0x0F, 0x11], mem: 16, kind: .f64)
    simd("movss xmm/m32, xmm", [0xF3], [0x0F, 0x11], mem: 4, kind: .f32)
    simd("movsd xmm/m64, xmm", [0xF2], [0x0F, 0x11], mem: 8, kind: .f64)
    simd("movlps/movhlps xmm, m64/xmm", [], [0x0F, 0x12], mem: 8, kind: .f32)
    simd("movlpd xmm, m64", [0x66], [0x0F, 0x12], mem: -8, kind: .f64)
    simd("movlps m64, xmm", [], [0x0F, 0x13], mem: -8, kind: .f32)
    simd("movlpd m64, xmm", [0x66], [0x0F, 0x13], mem: -8, kind: .f64)
    simd("movhps/movlhps xmm, m64/xmm", [], [0x0F, 0x16], mem: 8, kind: .f32)
    simd("movhpd xmm, m64", [0x66], [0x0F, 0x16], mem: -8, kind: .f64)
    simd("movhps m64, xmm", [], [0x0F, 0x17], mem: -8, kind: .f32)
    simd("movhpd m64, xmm", [0x66], [0x0F, 0x17], mem: -8, kind: .f64)
    simd("movaps xmm, xmm/m128", [], [0x0F, 0x28], mem: 16, kind: .f32)
    simd("movapd xmm, xmm/m128", [0x66], [0x0F, 0x28], mem: 16, kind: .f64)
    simd("movaps xmm/m128, xmm", [], [0x0F, 0x29], mem: 16, kind: .f32)
    simd("movapd xmm/m128, xmm", [0x66], [0x0F, 0x29], mem: 16, kind: .f64)
    simd("movntps m128, xmm", [], [0x0F, 0x2B], mem: -16, kind: .f32)
    simd("movntpd m128, xmm", [0x66], [0x0F, 0x2B], mem: -16, kind: .f64)
    simd("movntdq m128, xmm", [0x66], [0x0F, 0xE7], mem: -16, kind: .int)
    simd("movdqa xmm, xmm/m128", [0x66], [0x0F, 0x6F], mem: 16, kind: .int)
    simd("movdqu xmm, xmm/m128", [0xF3], [0x0F, 0x6F], mem: 16, kind: .int)
    simd("movdqa xmm/m128, xmm", [0x66], [0x0F, 0x7F], mem: 16, kind: .int)
    simd("movdqu xmm/m128, xmm", [0xF3], [0x0F, 0x7F], mem: 16, kind: .int)
    simd("movq xmm, xmm/m64", [0xF3], [0x0F, 0x7E], mem: 8, kind: .int)
    simd("movq xmm/m64, xmm", [0x66], [0x0F, 0xD6], mem: 8, kind: .int)
    simd("movd xmm, r/m32", [0x66], [0x0F, 0x6E], rm: .gpr32, mem: 4, kind: .i32)
    simd("movq xmm, r/m64", [0x66], [0x0F, 0x6E], rm: .gpr64, mem: 8, kind: .i64, w: true)
    simd("movd r/m32, xmm", [0x66], [0x0F, 0x7E], rm: .gpr32, mem: 4, kind: .i32, store: true)
    simd(
      "movq r/m64, xmm", [0x66], [0x0F, 0x7E], rm: .gpr64, mem: 8, kind: .i64, store: true, w: true)
    add("movnti m32/m64, r") { g in
      let w = g.rng.chance(50)
      let rm = FormTable.fpMem(g, size: w ? 8 : 4, kind: .int)
      g.emit(Asm.encode(size: w ? 8 : 4, opcode: [0x0F, 0xC3], reg: g.pickSrc(), rm: rm))
      return true
    }
    simd("movmskps r32, xmm", [], [0x0F, 0x50], reg: .gpr32, mem: 0, kind: .f32)
    simd("movmskpd r32, xmm", [0x66], [0x0F, 0x50], reg: .gpr32, mem: 0, kind: .f64)
    simd("pmovmskb r32, xmm", [0x66], [0x0F, 0xD7], reg: .gpr32, mem: 0, kind: .int)
    simd("pextrw r32, xmm, imm8", [0x66], [0x0F, 0xC5], reg: .gpr32, mem: 0, kind: .int, imm: 1)
    simd("pinsrw xmm, r32/m16, imm8", [0x66], [0x0F, 0xC4], rm: .gpr32, mem: 2, kind: .i16, imm: 1)
    add("maskmovdqu xmm, xmm") { g in
      guard let _ = g.knownValue(7, or: { g.dataTarget(size: 16) }) else { return false }
      if let a = g.assigned[7], a < Layout.data || a > Layout.data + Layout.dataSize - 16 {
        return false
      }
      g.emit(
        Asm.encode(
          prefixes: [0x66], size: 4, opcode: [0x0F, 0xF7], reg: g.rng.below(16),
          rm: .reg(g.rng.below(16))))
      return true
    }

    // Logic, shuffles, unpacks on FP data.
    for (n, o) in [("andps", 0x54), ("andnps", 0x55), ("orps", 0x56), ("xorps", 0x57)] {
      simd("\(n) xmm, xmm/m128", [], [0x0F, UInt8(o)], mem: 16, kind: .f32)
      simd("\(n.dropLast())d xmm, xmm/m128", [0x66], [0x0F, UInt8(o)], mem: 16, kind: .f64)
    }
    simd("unpcklps xmm, xmm/m128", [], [0x0F, 0x14], mem: 16, kind: .f32)
    simd("unpcklpd xmm, xmm/m128", [0x66], [0x0F, 0x14], mem: 16, kind: .f64)
    simd("unpckhps xmm, xmm/m128", [], [0x0F, 0x15], mem: 16, kind: .f32)
    simd("unpckhpd xmm, xmm/m128", [0x66], [0x0F, 0x15], mem: 16, kind: .f64)
    simd("shufps xmm, xmm/m128, imm8", [], [0x0F, 0xC6], mem: 16, kind: .f32, imm: 1)
    simd("shufpd xmm, xmm/m128, imm8", [0x66], [0x0F, 0xC6], mem: 16, kind: .f64, imm: 1)

    // FP arithmetic.
    let arith: [(String, UInt8)] = [
      ("add", 0x58), ("mul", 0x59), ("sub", 0x5C), ("min", 0x5D), ("div", 0x5E), ("max", 0x5F),
      ("sqrt", 0x51),
    ]
    for (n, o) in arith {
      simd("\(n)ps xmm, xmm/m128", [], [0x0F, o], mem: 16, kind: .f32)
      simd("\(n)pd xmm, xmm/m128", [0x66], [0x0F, o], mem: 16, kind: .f64)
      simd("\(n)ss xmm, xmm/m32", [0xF3], [0x0F, o], mem: 4, kind: .f32)
      simd("\(n)sd xmm, xmm/m64", [0xF2], [0x0F, o], mem: 8, kind: .f64)
    }
    let preds: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7]
    simd(
      "cmpps xmm, xmm/m128, imm8", [], [0x0F, 0xC2], mem: 16, kind: .f32, imm: 1, immValues: preds)
    simd(
      "cmppd xmm, xmm/m128, imm8", [0x66], [0x0F, 0xC2], mem: 16, kind: .f64, imm: 1,
      immValues: preds)
    simd(
      "cmpss xmm, xmm/m32, imm8", [0xF3], [0x0F, 0xC2], mem: 4, kind: .f32, imm: 1, immValues: preds
    )
    simd(
      "cmpsd xmm, xmm/m64, imm8", [0xF2], [0x0F, 0xC2], mem: 8, kind: .f64, imm: 1, immValues: preds
    )
    simd("ucomiss xmm, xmm/m32", [], [0x0F, 0x2E], mem: 4, kind: .f32, flags: true)
    simd("comiss xmm, xmm/m32", [], [0x0F, 0x2F], mem: 4, kind: .f32, flags: true)
    simd("ucomisd xmm, xmm/m64", [0x66], [0x0F, 0x2E], mem: 8, kind: .f64, flags: true)
    simd("comisd xmm, xmm/m64", [0x66], [0x0F, 0x2F], mem: 8, kind: .f64, flags: true)
    // RCP/RSQRT: the approximation is the host's (implementation-specific), so
    // the interpreter runs the host instruction; compared exactly here.
    simd("rcpps xmm, xmm/m128", [], [0x0F, 0x53], mem: 16, kind: .f32)
    simd("rcpss xmm, xmm/m32", [0xF3], [0x0F, 0x53], mem: 4, kind: .f32)
    simd("rsqrtps xmm, xmm/m128", [], [0x0F, 0x52], mem: 16, kind: .f32)
    simd("rsqrtss xmm, xmm/m32", [0xF3], [0x0F, 0x52], mem: 4, kind: .f32)

    // Conversions.
    simd("cvtsi2ss xmm, r/m32", [0xF3], [0x0F, 0x2A], rm: .gpr32, mem: 4, kind: .i32)
    simd("cvtsi2ss xmm, r/m64", [0xF3], [0x0F, 0x2A], rm: .gpr64, mem: 8, kind: .i64, w: true)
    simd("cvtsi2sd xmm, r/m32", [0xF2], [0x0F, 0x2A], rm: .gpr32, mem: 4, kind: .i32)
    simd("cvtsi2sd xmm, r/m64", [0xF2], [0x0F, 0x2A], rm: .gpr64, mem: 8, kind: .i64, w: true)
    for (t, o) in [("t", UInt8(0x2C)), ("", UInt8(0x2D))] {
      simd("cvt\(t)ss2si r32, xmm/m32", [0xF3], [0x0F, o], reg: .gpr32, mem: 4, kind: .f32)
      simd(
        "cvt\(t)ss2si r64, xmm/m32", [0xF3], [0x0F, o], reg: .gpr64, mem: 4, kind: .f32, w: true)
      simd("cvt\(t)sd2si r32, xmm/m64", [0xF2], [0x0F, o], reg: .gpr32, mem: 8, kind: .f64)
      simd(
        "cvt\(t)sd2si r64, xmm/m64", [0xF2], [0x0F, o], reg: .gpr64, mem: 8, kind: .f64, w: true)
    }
    simd("cvtps2pd xmm, xmm/m64", [], [0x0F, 0x5A], mem: 8, kind: .f32)
    simd("cvtpd2ps xmm, xmm/m128", [0x66], [0x0F, 0x5A], mem: 16, kind: .f64)
    simd("cvtss2sd xmm, xmm/m32", [0xF3], [0x0F, 0x5A], mem: 4, kind: .f32)
    simd("cvtsd2ss xmm, xmm/m64", [0xF2], [0x0F, 0x5A], mem: 8, kind: .f64)
    simd("cvtdq2ps xmm, xmm/m128", [], [0x0F, 0x5B], mem: 16, kind: .int)
    simd("cvtps2dq xmm, xmm/m128", [0x66], [0x0F, 0x5B], mem: 16, kind: .f32)
    simd("cvttps2dq xmm, xmm/m128", [0xF3], [0x0F, 0x5B], mem: 16, kind: .f32)
    simd("cvttpd2dq xmm, xmm/m128", [0x66], [0x0F, 0xE6], mem: 16, kind: .f64)
    simd("cvtpd2dq xmm, xmm/m128", [0xF2], [0x0F, 0xE6], mem: 16, kind: .f64)
    simd("cvtdq2pd xmm, xmm/m64", [0xF3], [0x0F, 0xE6], mem: 8, kind: .int)
    simd("cvtpi2ps xmm, mm/m64", [], [0x0F, 0x2A], rm: .mm, mem: 8, kind: .int)
    simd("cvtpi2pd xmm, mm/m64", [0x66], [0x0F, 0x2A], rm: .mm, mem: 8, kind: .int)
    simd("cvtps2pi mm, xmm/m64", [], [0x0F, 0x2D], reg: .mm, mem: 8, kind: .f32)
    simd("cvttps2pi mm, xmm/m64", [], [0x0F, 0x2C], reg: .mm, mem: 8, kind: .f32)
    simd("cvtpd2pi mm, xmm/m128", [0x66], [0x0F, 0x2D], reg: .mm, mem: 16, kind: .f64)
    simd("cvttpd2pi mm, xmm/m128", [0x66], [0x0F, 0x2C], reg: .mm, mem: 16, kind: .f64)

    // SSE2 integer: every lane-wise op in its XMM (66) and MMX forms.
    let intOps: [(String, UInt8, Bool)] = [
      ("punpcklbw", 0x60, true), ("punpcklwd", 0x61, true), ("punpckldq", 0x62, true),
      ("packsswb", 0x63, true), ("pcmpgtb", 0x64, true), ("pcmpgtw", 0x65, true),
      ("pcmpgtd", 0x66, true), ("packuswb", 0x67, true), ("punpckhbw", 0x68, true),
      ("punpckhwd", 0x69, true), ("punpckhdq", 0x6A, true), ("packssdw", 0x6B, true),
      ("punpcklqdq", 0x6C, false), ("punpckhqdq", 0x6D, false), ("pcmpeqb", 0x74, true),
      ("pcmpeqw", 0x75, true), ("pcmpeqd", 0x76, true), ("psrlw", 0xD1, true),
      ("psrld", 0xD2, true),
      ("psrlq", 0xD3, true), ("paddq", 0xD4, true), ("pmullw", 0xD5, true), ("psubusb", 0xD8, true),
      ("psubusw", 0xD9, true), ("pminub", 0xDA, true), ("pand", 0xDB, true),
      ("paddusb", 0xDC, true),
      ("paddusw", 0xDD, true), ("pmaxub", 0xDE, true), ("pandn", 0xDF, true), ("pavgb", 0xE0, true),
      ("psraw", 0xE1, true), ("psrad", 0xE2, true), ("pavgw", 0xE3, true), ("pmulhuw", 0xE4, true),
      ("pmulhw", 0xE5, true), ("psubsb", 0xE8, true), ("psubsw", 0xE9, true),
      ("pminsw", 0xEA, true),
      ("por", 0xEB, true), ("paddsb", 0xEC, true), ("paddsw", 0xED, true), ("pmaxsw", 0xEE, true),
      ("pxor", 0xEF, true), ("psllw", 0xF1, true), ("pslld", 0xF2, true), ("psllq", 0xF3, true),
      ("pmuludq", 0xF4, true), ("pmaddwd", 0xF5, true), ("psadbw", 0xF6, true),
      ("psubb", 0xF8, true),
      ("psubw", 0xF9, true), ("psubd", 0xFA, true), ("psubq", 0xFB, true), ("paddb", 0xFC, true),
      ("paddw", 0xFD, true), ("paddd", 0xFE, true),
    ]
    for (n, o, hasMMX) in intOps {
      let shift = [0xD1, 0xD2, 0xD3, 0xE1, 0xE2, 0xF1, 0xF2, 0xF3].contains(Int(o))
      if shift {
        // Counts: small values in memory often; registers hold edge patterns.
        simd("\(n) xmm, xmm/m128", [0x66], [0x0F, o], mem: 16, kind: .i16)
        if hasMMX { simd("\(n) mm, mm/m64", [], [0x0F, o], reg: .mm, rm: .mm, mem: 8, kind: .i16) }
      } else {
        simd("\(n) xmm, xmm/m128", [0x66], [0x0F, o], mem: 16, kind: .int)
        if hasMMX { simd("\(n) mm, mm/m64", [], [0x0F, o], reg: .mm, rm: .mm, mem: 8, kind: .int) }
      }
    }
    let counts: [UInt8] = [0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255]
    for (n, o, d, mmx) in [
      ("psrlw", 0x71, 2, true), ("psraw", 0x71, 4, true), ("psllw", 0x71, 6, true),
      ("psrld", 0x72, 2, true), ("psrad", 0x72, 4, true), ("pslld", 0x72, 6, true),
      ("psrlq", 0x73, 2, true), ("psrldq", 0x73, 3, false), ("psllq", 0x73, 6, true),
      ("pslldq", 0x73, 7, false),
    ] as [(String, UInt8, Int, Bool)] {
      simd(
        "\(n) xmm, imm8", [0x66], [0x0F, o], mem: 0, kind: .int, imm: 1, immValues: counts,
        immDigit: d)
      if mmx {
        simd(
          "\(n) mm, imm8", [], [0x0F, o], reg: .mm, rm: .mm, mem: 0, kind: .int, imm: 1,
          immValues: counts, immDigit: d)
      }
    }
    simd("pshufd xmm, xmm/m128, imm8", [0x66], [0x0F, 0x70], mem: 16, kind: .int, imm: 1)
    simd("pshufhw xmm, xmm/m128, imm8", [0xF3], [0x0F, 0x70], mem: 16, kind: .int, imm: 1)
    simd("pshuflw xmm, xmm/m128, imm8", [0xF2], [0x0F, 0x70], mem: 16, kind: .int, imm: 1)

    // MMX data movement.
    simd("movd mm, r/m32", [], [0x0F, 0x6E], reg: .mm, rm: .gpr32, mem: 4, kind: .i32)
    simd("movq mm, r/m64", [], [0x0F, 0x6E], reg: .mm, rm: .gpr64, mem: 8, kind: .i64, w: true)
    simd("movd r/m32, mm", [], [0x0F, 0x7E], reg: .mm, rm: .gpr32, mem: 4, kind: .i32, store: true)
    simd(
      "movq r/m64, mm", [], [0x0F, 0x7E], reg: .mm, rm: .gpr64, mem: 8, kind: .i64, store: true,
      w: true)
    simd("movq mm, mm/m64", [], [0x0F, 0x6F], reg: .mm, rm: .mm, mem: 8, kind: .int)
    simd("movq mm/m64, mm", [], [0x0F, 0x7F], reg: .mm, rm: .mm, mem: 8, kind: .int)
    simd("movntq m64, mm", [], [0x0F, 0xE7], reg: .mm, rm: .mm, mem: -8, kind: .int)
    simd("movq2dq xmm, mm", [0xF3], [0x0F, 0xD6], rm: .mm, mem: 0, kind: .int)
    simd("movdq2q mm, xmm", [0xF2], [0x0F, 0xD6], reg: .mm, mem: 0, kind: .int)
    simd("pmovmskb r32, mm", [], [0x0F, 0xD7], reg: .gpr32, rm: .mm, mem: 0, kind: .int)
    simd(
      "pextrw r32, mm, imm8", [], [0x0F, 0xC5], reg: .gpr32, rm: .mm, mem: 0, kind: .int, imm: 1)
    simd(
      "pinsrw mm, r32/m16, imm8", [], [0x0F, 0xC4], reg: .mm, rm: .gpr32, mem: 2, kind: .i16, imm: 1
    )
    simd(
      "pshufw mm, mm/m64, imm8", [], [0x0F, 0x70], reg: .mm, rm: .mm, mem: 8, kind: .int, imm: 1)
    add("emms") { g in
      g.emit(Encoded(bytes: [0x0F, 0x77], ripFixup: nil))
      return true
    }

    // MXCSR.
    add("ldmxcsr m32") { g in
      let m = g.memOperand(size: 4, align: 4, patch: false)
      var r = g.rng
      var v = UInt64(FX.mxcsr(&r))
      g.rng = r
      // A reserved bit: #GP (bit 17 is left out: AMD's MXCSR_MASK allows it).
      if g.rng.chance(3) { v |= 1 << UInt64(g.rng.pick([16, 18, 19, 20, 24, 31] as [Int])) }
      // The operand is always patched: random memory could set MXCSR bit 17,
      // which this AMD host accepts (MXCSR_MASK 0x2FFFF, misaligned-SSE mode)
      // and the interpreter, like Intel (MXCSR_MASK 0xFFFF), rejects with #GP.
      guard FormTable.fpPatchRaw(g, m.target, v, size: 4) else { return false }
      g.emit(Asm.encode(size: 4, opcode: [0x0F, 0xAE], reg: 2, rm: .mem(m)))
      return true
    }
    add("stmxcsr m32") { g in
      let m = g.memOperand(size: 4)
      g.emit(Asm.encode(size: 4, opcode: [0x0F, 0xAE], reg: 3, rm: .mem(m)))
      return true
    }
  }

  /// Patches the qword holding [a, a+size) so that the operand reads v.
  @discardableResult
  static func fpPatchRaw(_ g: Gen, _ a: UInt64, _ v: UInt64, size: Int) -> Bool {
    let q = a & ~7
    guard g.patches.count < Layout.maxPatches, !g.patched.contains(q), a + UInt64(size) <= q + 8,
      q >= Layout.data, q + 8 <= Layout.data + Layout.dataSize
    else { return false }
    let sh = (a - q) * 8
    let mask: UInt64 = size == 8 ? ~0 : ((1 << UInt64(size * 8)) - 1) << sh
    g.patched.insert(q)
    g.patches.append((q, (g.rng.next() & ~mask) | ((v << sh) & mask)))
    return true
  }
}
