// x86-64-v2 forms: SSE3, SSSE3, SSE4.1, SSE4.2 (string compares, CRC32,
// PCMPGTQ) and POPCNT.

extension FormTable {
  /// A byte of string-like data: often NUL or a letter from a small alphabet,
  /// so that implicit lengths and matches are common.
  static func stringByte(_ r: inout SplitMix) -> UInt64 {
    switch r.below(10) {
    case 0, 1: return 0
    case 2, 3, 4, 5: return 0x61 + UInt64(r.below(4))
    case 6: return 0x80 + UInt64(r.below(4))
    default: return r.next() & 0xFF
    }
  }

  func sse3To42() {
    // SSE3.
    simd("addsubps xmm, xmm/m128", [0xF2], [0x0F, 0xD0], mem: 16, kind: .f32)
    simd("addsubpd xmm, xmm/m128", [0x66], [0x0F, 0xD0], mem: 16, kind: .f64)
    simd("haddps xmm, xmm/m128", [0xF2], [0x0F, 0x7C], mem: 16, kind: .f32)
    simd("hsubps xmm, xmm/m128", [0xF2], [0x0F, 0x7D], mem: 16, kind: .f32)
    simd("haddpd xmm, xmm/m128", [0x66], [0x0F, 0x7C], mem: 16, kind: .f64)
    simd("hsubpd xmm, xmm/m128", [0x66], [0x0F, 0x7D], mem: 16, kind: .f64)
    simd("lddqu xmm, m128", [0xF2], [0x0F, 0xF0], mem: -16, kind: .int)
    simd("movddup xmm, xmm/m64", [0xF2], [0x0F, 0x12], mem: 8, kind: .f64)
    simd("movsldup xmm, xmm/m128", [0xF3], [0x0F, 0x12], mem: 16, kind: .f32)
    simd("movshdup xmm, xmm/m128", [0xF3], [0x0F, 0x16], mem: 16, kind: .f32)

    // SSSE3, XMM and MMX forms.
    let ssse3: [(String, UInt8)] = [
      ("pshufb", 0x00), ("phaddw", 0x01), ("phaddd", 0x02), ("phaddsw", 0x03),
      ("pmaddubsw", 0x04), ("phsubw", 0x05), ("phsubd", 0x06), ("phsubsw", 0x07),
      ("psignb", 0x08), ("psignw", 0x09), ("psignd", 0x0A), ("pmulhrsw", 0x0B),
      ("pabsb", 0x1C), ("pabsw", 0x1D), ("pabsd", 0x1E),
    ]
    for (n, o) in ssse3 {
      simd("\(n) xmm, xmm/m128", [0x66], [0x0F, 0x38, o], mem: 16, kind: .int)
      simd("\(n) mm, mm/m64", [], [0x0F, 0x38, o], reg: .mm, rm: .mm, mem: 8, kind: .int)
    }
    let shifts: [UInt8] = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 255]
    simd(
      "palignr xmm, xmm/m128, imm8", [0x66], [0x0F, 0x3A, 0x0F], mem: 16, kind: .int, imm: 1,
      immValues: shifts)
    simd(
      "palignr mm, mm/m64, imm8", [], [0x0F, 0x3A, 0x0F], reg: .mm, rm: .mm, mem: 8, kind: .int,
      imm: 1, immValues: shifts)

    // SSE4.1.
    for (i, n) in ["bw", "bd", "bq", "wd", "wq", "dq"].enumerated() {
      let size = [8, 4, 2, 8, 4, 8][i]
      simd(
        "pmovsx\(n) xmm, xmm/m\(size * 8)", [0x66], [0x0F, 0x38, 0x20 + UInt8(i)], mem: size,
        kind: .int)
      simd(
        "pmovzx\(n) xmm, xmm/m\(size * 8)", [0x66], [0x0F, 0x38, 0x30 + UInt8(i)], mem: size,
        kind: .int)
    }
    simd("movntdqa xmm, m128", [0x66], [0x0F, 0x38, 0x2A], mem: -16, kind: .int)
    simd("pblendvb xmm, xmm/m128, <xmm0>", [0x66], [0x0F, 0x38, 0x10], mem: 16, kind: .int)
    simd("blendvps xmm, xmm/m128, <xmm0>", [0x66], [0x0F, 0x38, 0x14], mem: 16, kind: .f32)
    simd("blendvpd xmm, xmm/m128, <xmm0>", [0x66], [0x0F, 0x38, 0x15], mem: 16, kind: .f64)
    simd("ptest xmm, xmm/m128", [0x66], [0x0F, 0x38, 0x17], mem: 16, kind: .int, flags: true)
    simd("phminposuw xmm, xmm/m128", [0x66], [0x0F, 0x38, 0x41], mem: 16, kind: .int)
    let ints: [(String, UInt8)] = [
      ("pmuldq", 0x28), ("pcmpeqq", 0x29), ("packusdw", 0x2B), ("pcmpgtq", 0x37),
      ("pminsb", 0x38), ("pminsd", 0x39), ("pminuw", 0x3A), ("pminud", 0x3B), ("pmaxsb", 0x3C),
      ("pmaxsd", 0x3D), ("pmaxuw", 0x3E), ("pmaxud", 0x3F), ("pmulld", 0x40),
    ]
    for (n, o) in ints {
      simd("\(n) xmm, xmm/m128", [0x66], [0x0F, 0x38, o], mem: 16, kind: .int)
    }
    let rc: [UInt8] = Array(0...15)
    simd(
      "roundps xmm, xmm/m128, imm8", [0x66], [0x0F, 0x3A, 0x08], mem: 16, kind: .f32, imm: 1,
      immValues: rc)
    simd(
      "roundpd xmm, xmm/m128, imm8", [0x66], [0x0F, 0x3A, 0x09], mem: 16, kind: .f64, imm: 1,
      immValues: rc)
    simd(
      "roundss xmm, xmm/m32, imm8", [0x66], [0x0F, 0x3A, 0x0A], mem: 4, kind: .f32, imm: 1,
      immValues: rc)
    simd(
      "roundsd xmm, xmm/m64, imm8", [0x66], [0x0F, 0x3A, 0x0B], mem: 8, kind: .f64, imm: 1,
      immValues: rc)
    simd("blendps xmm, xmm/m128, imm8", [0x66], [0x0F, 0x3A, 0x0C], mem: 16, kind: .f32, imm: 1)
    simd("blendpd xmm, xmm/m128, imm8", [0x66], [0x0F, 0x3A, 0x0D], mem: 16, kind: .f64, imm: 1)
    simd("pblendw xmm, xmm/m128, imm8", [0x66], [0x0F, 0x3A, 0x0E], mem: 16, kind: .int, imm: 1)
    simd(
      "pextrb r/m8, xmm, imm8", [0x66], [0x0F, 0x3A, 0x14], rm: .gpr32, mem: 1, kind: .int, imm: 1,
      store: true)
    simd(
      "pextrw r/m16, xmm, imm8", [0x66], [0x0F, 0x3A, 0x15], rm: .gpr32, mem: 2, kind: .int, imm: 1,
      store: true)
    simd(
      "pextrd r/m32, xmm, imm8", [0x66], [0x0F, 0x3A, 0x16], rm: .gpr32, mem: 4, kind: .int, imm: 1,
      store: true)
    simd(
      "pextrq r/m64, xmm, imm8", [0x66], [0x0F, 0x3A, 0x16], rm: .gpr64, mem: 8, kind: .int, imm: 1,
      store: true, w: true)
    simd(
      "extractps r/m32, xmm, imm8", [0x66], [0x0F, 0x3A, 0x17], rm: .gpr32, mem: 4, kind: .f32,
      imm: 1, store: true)
    simd(
      "pinsrb xmm, r32/m8, imm8", [0x66], [0x0F, 0x3A, 0x20], rm: .gpr32, mem: 1, kind: .int, imm: 1
    )
    simd(
      "pinsrd xmm, r/m32, imm8", [0x66], [0x0F, 0x3A, 0x22], rm: .gpr32, mem: 4, kind: .i32, imm: 1)
    simd(
      "pinsrq xmm, r/m64, imm8", [0x66], [0x0F, 0x3A, 0x22], rm: .gpr64, mem: 8, kind: .i64, imm: 1,
      w: true)
    simd("insertps xmm, xmm/m32, imm8", [0x66], [0x0F, 0x3A, 0x21], mem: 4, kind: .f32, imm: 1)
    let dp: [UInt8] = [0xFF, 0xF1, 0x31, 0x71, 0x33, 0x13, 0x3F, 0xF8, 0x11, 0x22, 0x0F]
    dotProduct("dpps xmm, m128, imm8", 0x40, double: false, imms: dp)
    dotProduct("dppd xmm, m128, imm8", 0x41, double: true, imms: dp)
    simd("mpsadbw xmm, xmm/m128, imm8", [0x66], [0x0F, 0x3A, 0x42], mem: 16, kind: .int, imm: 1)

    // SSE4.2 string compares: string-like data, explicit lengths near the element count.
    for (n, o) in [
      ("pcmpestrm", 0x60), ("pcmpestri", 0x61), ("pcmpistrm", 0x62), ("pcmpistri", 0x63),
    ]
      as [(String, UInt8)]
    {
      add("\(n) xmm, xmm/m128, imm8") { g in
        let explicit = o <= 0x61
        let w = explicit && g.rng.chance(30)
        if explicit {
          // mov rax/rdx, simm32: small lengths (negative ones too), sometimes huge.
          for reg in [0, 2] {
            let len: Int64 = g.rng.chance(85) ? Int64(g.rng.below(41)) - 20 : Int64(Int32.min)
            g.emitHelper(
              Encoded(
                bytes: [0x48, 0xC7, 0xC0 | UInt8(reg)] + Asm.imm(UInt64(bitPattern: len), 4),
                ripFixup: nil))
            g.written(reg)
          }
        }
        let r1 = g.rng.below(16)
        if g.rng.chance(60) {
          // Load the first operand with string-like data: movdqu xmm, m128.
          let m = g.memOperand(size: 16, align: 1, patch: false)
          FormTable.fpPatch(g, m.target, size: 16, kind: .str)
          g.emitHelper(
            Asm.encode(prefixes: [0xF3], size: 4, opcode: [0x0F, 0x6F], reg: r1, rm: .mem(m)))
        }
        let rm: RMOperand
        if g.rng.chance(50) {
          let m = g.memOperand(size: 16, align: 1, patch: false)
          FormTable.fpPatch(g, m.target, size: 16, kind: .str)
          rm = .mem(m)
        } else {
          rm = .reg(g.rng.below(16))
        }
        let imm = UInt8(truncatingIfNeeded: g.rng.next()) & 0x7F
        g.emit(
          Asm.encode(
            prefixes: [0x66], size: w ? 8 : 4, opcode: [0x0F, 0x3A, o], reg: r1, rm: rm, imm: [imm])
        )
        if o & 1 != 0 { g.written(1) }
        g.flags(defined: Flag.status)
        return true
      }
    }

    // CRC32 (F2 0F 38 F0/F1) and POPCNT.
    for (n, size, op) in [
      ("crc32 r32, r/m8", 1, UInt8(0xF0)), ("crc32 r32, r/m16", 2, 0xF1),
      ("crc32 r32, r/m32", 4, 0xF1),
      ("crc32 r64, r/m64", 8, 0xF1), ("crc32 r64, r/m8", 8, 0xF0),
    ] as [(String, Int, UInt8)] {
      add(n) { g in
        let byteSrc = op == 0xF0
        let dst = g.pickDest()
        var rm: RMOperand
        if g.rng.chance(40) {
          rm = .mem(g.memOperand(size: byteSrc ? 1 : size))
        } else if byteSrc {
          // AH..BH forbid REX: only with a low destination and no REX.W.
          let legacy = size != 8 && dst < 8 && g.rng.chance(40)
          rm = .reg(g.byteReg(legacy: legacy, dest: false))
        } else {
          rm = .reg(g.pickSrc())
        }
        // 0x66 must follow F2 in the encoder: the size prefix comes from `size`.
        g.emit(
          Asm.encode(
            prefixes: [0xF2], size: size, opcode: [0x0F, 0x38, op], reg: dst, rm: rm,
            rmIsByte: byteSrc))
        g.written(dst)
        return true
      }
    }
    for size in [2, 4, 8] {
      add("popcnt r\(size * 8), r/m\(size * 8)") { g in
        let dst = g.pickDest()
        let rm = g.rmOperand(size: size, write: false)
        g.emit(Asm.encode(prefixes: [0xF3], size: size, opcode: [0x0F, 0xB8], reg: dst, rm: rm))
        g.written(dst)
        g.flags(defined: Flag.status)
        return true
      }
    }
  }

  /// DPPS/DPPD on finite operands, both from memory (the destination loaded by MOVUPS
  /// first). Vendor difference: with NaNs in two or more lanes, which one the sum returns
  /// is the hardware's order of additions; the interpreter follows the SDM's pseudo-code,
  /// as the AMD host the forms were written on does, and Intel's hardware does not. With
  /// finite operands every NaN is the default one (docs/DIFFTEST.md).
  func dotProduct(_ name: String, _ op: UInt8, double: Bool, imms: [UInt8]) {
    add(name) { g in
      func finite() -> UInt64 {
        while true {
          if double {
            let x = FX.f64(&g.rng)
            if (x >> 52) & 0x7FF != 0x7FF { return x }
          } else {
            let x = UInt64(FX.f32(&g.rng))
            if (x >> 23) & 0xFF != 0xFF { return x }
          }
        }
      }
      func operand() -> MemOperand? {
        let m = g.memOperand(size: 16, align: 16, patch: false)
        let a = m.target
        guard a & 15 == 0, g.patches.count + 2 <= Layout.maxPatches, !g.patched.contains(a),
          !g.patched.contains(a + 8)
        else { return nil }
        for q in [a, a + 8] {
          let v = double ? finite() : finite() | finite() << 32
          g.patched.insert(q)
          g.patches.append((q, v))
        }
        return m
      }
      let d = g.rng.below(16)
      guard let m1 = operand(), let m2 = operand() else { return false }
      g.emit(Asm.encode(prefixes: [], size: 4, opcode: [0x0F, 0x10], reg: d, rm: .mem(m1)))
      let imm = g.rng.chance(60) ? g.rng.pick(imms) : UInt8(truncatingIfNeeded: g.rng.next())
      g.emit(
        Asm.encode(
          prefixes: [0x66], size: 4, opcode: [0x0F, 0x3A, op], reg: d, rm: .mem(m2), imm: [imm]))
      return true
    }
  }
}
