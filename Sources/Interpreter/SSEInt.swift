import X86

// SSE2 / MMX integer instructions (0F 60-7F, C4, C5, D1-FE).

@inline(__always) func interleave<T: SIMD>(_ x: T, _ y: T, high: Bool) -> T {
  var r = T()
  let n = T.scalarCount / 2
  let o = high ? n : 0
  for i in 0..<n {
    r[2 &* i] = x[o &+ i]
    r[2 &* i &+ 1] = y[o &+ i]
  }
  return r
}

/// Byte shift of a 128-bit value left (PSLLDQ) by n bytes.
@inline(__always) func byteShiftLeft(_ v: V128, _ n: UInt64) -> V128 {
  if n >= 16 { return V128(0, 0) }
  let bits = n &* 8
  if bits == 0 { return v }
  if bits >= 64 { return V128(0, v[0] << (bits &- 64)) }
  return V128(v[0] << bits, (v[1] << bits) | (v[0] >> (64 &- bits)))
}

@inline(__always) func byteShiftRight(_ v: V128, _ n: UInt64) -> V128 {
  if n >= 16 { return V128(0, 0) }
  let bits = n &* 8
  if bits == 0 { return v }
  if bits >= 64 { return V128(v[1] >> (bits &- 64), 0) }
  return V128((v[0] >> bits) | (v[1] << (64 &- bits)), v[1] >> bits)
}

/// Packed shifts: kind 0 logical right, 1 arithmetic right, 2 left; lane width w bytes.
@inline(__always) func packedShift(_ a: V128, _ count: UInt64, _ kind: Int, _ w: Int) -> V128 {
  let bits = UInt64(w * 8)
  if kind == 1 {
    let c = min(count, bits - 1)
    switch w {
    case 2: return v128(a.i16 &>> SIMD8<Int16>(repeating: Int16(c)))
    default: return v128(a.i32 &>> SIMD4<Int32>(repeating: Int32(c)))
    }
  }
  if count >= bits { return V128(0, 0) }
  switch w {
  case 2:
    let c = SIMD8<UInt16>(repeating: UInt16(count))
    return v128(kind == 0 ? a.u16 &>> c : a.u16 &<< c)
  case 4:
    let c = SIMD4<UInt32>(repeating: UInt32(count))
    return v128(kind == 0 ? a.u32 &>> c : a.u32 &<< c)
  default:
    let c = V128(repeating: count)
    return kind == 0 ? a &>> c : a &<< c
  }
}

@inline(__always) func mask<T: SIMD>(_ m: SIMDMask<T.MaskStorage>, _: T.Type) -> T
where T.Scalar: FixedWidthInteger {
  T(repeating: 0).replacing(with: ~0, where: m)
}

/// The lane-wise integer operations shared by the MMX and XMM forms (MMX uses lane 0).
func packedIntOp(_ b: UInt8, _ a: V128, _ s: V128, mmx: Bool) -> V128? {
  switch b {
  case 0x60:
    return mmx
      ? v128(interleave(a.u8, s.u8, high: false))
      : v128(interleave(a.u8, s.u8, high: false))
  case 0x61: return v128(interleave(a.u16, s.u16, high: false))
  case 0x62: return v128(interleave(a.u32, s.u32, high: false))
  case 0x68, 0x69, 0x6A:
    if mmx {
      // High halves of 64-bit registers: the low-interleave of the upper dwords.
      return packedIntOp(b &- 8, V128(a[0] >> 32, 0), V128(s[0] >> 32, 0), mmx: true)
    }
    switch b {
    case 0x68: return v128(interleave(a.u8, s.u8, high: true))
    case 0x69: return v128(interleave(a.u16, s.u16, high: true))
    default: return v128(interleave(a.u32, s.u32, high: true))
    }
  case 0x6C: return mmx ? nil : V128(a[0], s[0])
  case 0x6D: return mmx ? nil : V128(a[1], s[1])
  case 0x63, 0x67, 0x6B:
    // Packs: the MMX form packs (dst, src) as one 128-bit source.
    let (x, y) = mmx ? (V128(a[0], s[0]), V128(0, 0)) : (a, s)
    func half(_ v: V128) -> UInt64 {
      switch b {
      case 0x63:
        let c = v.i16.clamped(
          lowerBound: SIMD8<Int16>(repeating: -128), upperBound: SIMD8<Int16>(repeating: 127))
        return bc(SIMD8<Int8>(truncatingIfNeeded: c), UInt64.self)
      case 0x67:
        let c = v.i16.clamped(
          lowerBound: SIMD8<Int16>(repeating: 0), upperBound: SIMD8<Int16>(repeating: 255))
        return bc(SIMD8<UInt8>(truncatingIfNeeded: c), UInt64.self)
      default:
        let c = v.i32.clamped(
          lowerBound: SIMD4<Int32>(repeating: -32768), upperBound: SIMD4<Int32>(repeating: 32767))
        return bc(SIMD4<Int16>(truncatingIfNeeded: c), UInt64.self)
      }
    }
    return V128(half(x), half(y))
  case 0x64: return v128(mask(a.i8 .> s.i8, SIMD16<UInt8>.self))
  case 0x65: return v128(mask(a.i16 .> s.i16, SIMD8<UInt16>.self))
  case 0x66: return v128(mask(a.i32 .> s.i32, SIMD4<UInt32>.self))
  case 0x74: return v128(mask(a.u8 .== s.u8, SIMD16<UInt8>.self))
  case 0x75: return v128(mask(a.u16 .== s.u16, SIMD8<UInt16>.self))
  case 0x76: return v128(mask(a.u32 .== s.u32, SIMD4<UInt32>.self))
  case 0xD1: return packedShift(a, s[0], 0, 2)
  case 0xD2: return packedShift(a, s[0], 0, 4)
  case 0xD3: return packedShift(a, s[0], 0, 8)
  case 0xE1: return packedShift(a, s[0], 1, 2)
  case 0xE2: return packedShift(a, s[0], 1, 4)
  case 0xF1: return packedShift(a, s[0], 2, 2)
  case 0xF2: return packedShift(a, s[0], 2, 4)
  case 0xF3: return packedShift(a, s[0], 2, 8)
  case 0xD4: return a &+ s
  case 0xFB: return a &- s
  case 0xD5: return v128(a.i16 &* s.i16)
  case 0xD8:
    let x = a.u8
    let y = s.u8
    return v128((x &- y).replacing(with: 0, where: x .< y))
  case 0xD9:
    let x = a.u16
    let y = s.u16
    return v128((x &- y).replacing(with: 0, where: x .< y))
  case 0xDC:
    let r = a.u8 &+ s.u8
    return v128(r.replacing(with: 0xFF, where: r .< a.u8))
  case 0xDD:
    let r = a.u16 &+ s.u16
    return v128(r.replacing(with: 0xFFFF, where: r .< a.u16))
  case 0xDA: return v128(pointwiseMin(a.u8, s.u8))
  case 0xDE: return v128(pointwiseMax(a.u8, s.u8))
  case 0xEA: return v128(pointwiseMin(a.i16, s.i16))
  case 0xEE: return v128(pointwiseMax(a.i16, s.i16))
  case 0xDB: return a & s
  case 0xDF: return ~a & s
  case 0xEB: return a | s
  case 0xEF: return a ^ s
  case 0xE0:
    let r =
      (SIMD16<UInt16>(truncatingIfNeeded: a.u8) &+ SIMD16<UInt16>(truncatingIfNeeded: s.u8) &+ 1)
      &>> 1
    return v128(SIMD16<UInt8>(truncatingIfNeeded: r))
  case 0xE3:
    let r =
      (SIMD8<UInt32>(truncatingIfNeeded: a.u16) &+ SIMD8<UInt32>(truncatingIfNeeded: s.u16) &+ 1)
      &>> 1
    return v128(SIMD8<UInt16>(truncatingIfNeeded: r))
  case 0xE4:
    let r = SIMD8<UInt32>(truncatingIfNeeded: a.u16) &* SIMD8<UInt32>(truncatingIfNeeded: s.u16)
    return v128(SIMD8<UInt16>(truncatingIfNeeded: r &>> 16))
  case 0xE5:
    let r = SIMD8<Int32>(truncatingIfNeeded: a.i16) &* SIMD8<Int32>(truncatingIfNeeded: s.i16)
    return v128(SIMD8<Int16>(truncatingIfNeeded: r &>> 16))
  case 0xE8, 0xE9, 0xEC, 0xED, 0xF8, 0xF9, 0xFA, 0xFC, 0xFD, 0xFE:
    switch b {
    case 0xE8, 0xEC:  // PSUBSB / PADDSB
      let x = SIMD16<Int16>(truncatingIfNeeded: a.i8)
      let y = SIMD16<Int16>(truncatingIfNeeded: s.i8)
      let r = (b == 0xEC ? x &+ y : x &- y).clamped(
        lowerBound: SIMD16<Int16>(repeating: -128), upperBound: SIMD16<Int16>(repeating: 127))
      return v128(SIMD16<Int8>(truncatingIfNeeded: r))
    case 0xE9, 0xED:  // PSUBSW / PADDSW
      let x = SIMD8<Int32>(truncatingIfNeeded: a.i16)
      let y = SIMD8<Int32>(truncatingIfNeeded: s.i16)
      let r = (b == 0xED ? x &+ y : x &- y).clamped(
        lowerBound: SIMD8<Int32>(repeating: -32768), upperBound: SIMD8<Int32>(repeating: 32767))
      return v128(SIMD8<Int16>(truncatingIfNeeded: r))
    case 0xF8: return v128(a.u8 &- s.u8)
    case 0xF9: return v128(a.u16 &- s.u16)
    case 0xFA: return v128(a.u32 &- s.u32)
    case 0xFC: return v128(a.u8 &+ s.u8)
    case 0xFD: return v128(a.u16 &+ s.u16)
    default: return v128(a.u32 &+ s.u32)
    }
  case 0xF4:  // PMULUDQ
    let x = a.u32
    let y = s.u32
    return V128(UInt64(x[0]) &* UInt64(y[0]), UInt64(x[2]) &* UInt64(y[2]))
  case 0xF5:  // PMADDWD
    let p = SIMD8<Int32>(truncatingIfNeeded: a.i16) &* SIMD8<Int32>(truncatingIfNeeded: s.i16)
    return v128(p.evenHalf &+ p.oddHalf)
  case 0xF6:  // PSADBW
    let d = pointwiseMax(a.u8, s.u8) &- pointwiseMin(a.u8, s.u8)
    let w = SIMD16<UInt16>(truncatingIfNeeded: d)
    return V128(UInt64(w.lowHalf.wrappedSum()), UInt64(w.highHalf.wrappedSum()))
  default:
    return nil
  }
}

extension InterpreterCPU {
  func sseInt(_ b: UInt8, _ p: SSEPrefix, _ imm: Int) throws(Fault) {
    let d = modReg
    switch b {
    case 0x6E:  // MOVD/MOVQ mm|xmm, r/m32|64
      let s = opSize == 8 ? 8 : 4
      switch p {
      case .none:
        try mmxCheck()
        let v = try readE(s)
        mmxTransition()
        mmSet(d, v)
      case .p66:
        try sseCheck()
        xmmSet(d, V128(try readE(s), 0))
      default: throw Fault.ud()
      }
    case 0x7E:
      let s = opSize == 8 ? 8 : 4
      switch p {
      case .none:  // MOVD/MOVQ r/m, mm
        try mmxCheck()
        let v = mmGetST(d)
        try writeE(s, v & sizeMask(s))
        mmxTransition()
      case .p66:  // MOVD/MOVQ r/m, xmm
        try sseCheck()
        try writeE(s, xmmGet(d)[0] & sizeMask(s))
      case .pF3:  // MOVQ xmm, xmm/m64
        try sseCheck()
        xmmSet(d, V128(try xmmRM(8)[0], 0))
      case .pF2: throw Fault.ud()
      }
    case 0x6F:
      switch p {
      case .none:  // MOVQ mm, mm/m64
        try mmxCheck()
        let v = modIsReg ? mmGetST(modRM) : try readMem(eaSeg, addr(), 8)
        mmxTransition()
        mmSet(d, v)
      case .p66, .pF3:  // MOVDQA / MOVDQU
        try sseCheck()
        xmmSet(d, try xmmRM(16, align: p == .p66))
      case .pF2: throw Fault.ud()
      }
    case 0x7F:
      switch p {
      case .none:  // MOVQ mm/m64, mm
        try mmxCheck()
        let v = mmGetST(d)
        if !modIsReg { try writeMem(eaSeg, addr(), 8, v) }
        mmxTransition()
        if modIsReg { mmSet(modRM, v) }
      case .p66, .pF3:
        try sseCheck()
        if modIsReg {
          xmmSet(modRM, xmmGet(d))
        } else {
          try writeMem128(xmmGet(d), align: p == .p66)
        }
      case .pF2: throw Fault.ud()
      }
    case 0xD6:
      switch p {
      case .p66:  // MOVQ xmm/m64, xmm
        try sseCheck()
        let v = xmmGet(d)[0]
        if modIsReg { xmmSet(modRM, V128(v, 0)) } else { try writeMem(eaSeg, addr(), 8, v) }
      case .pF3:  // MOVQ2DQ xmm, mm
        if !modIsReg { throw Fault.ud() }
        try sseCheck()
        try mmxEnter()
        xmmSet(d, V128(mmGet(modRM), 0))
      case .pF2:  // MOVDQ2Q mm, xmm
        if !modIsReg { throw Fault.ud() }
        try sseCheck()
        try mmxEnter()
        mmSet(d, xmmGet(modRM)[0])
      case .none: throw Fault.ud()
      }
    case 0xE7:  // MOVNTQ / MOVNTDQ
      if modIsReg { throw Fault.ud() }
      switch p {
      case .none:
        try mmxCheck()
        try writeMem(eaSeg, addr(), 8, mmGetST(d))
        mmxTransition()
      case .p66:
        try sseCheck()
        try writeMem128(xmmGet(d), align: true)
      default: throw Fault.ud()
      }
    case 0xD7:  // PMOVMSKB r32, mm/xmm
      if !modIsReg { throw Fault.ud() }
      let v: V128
      switch p {
      case .none:
        try mmxEnter()
        v = V128(mmGet(modRM), 0)
      case .p66:
        try sseCheck()
        v = xmmGet(modRM)
      default: throw Fault.ud()
      }
      let bytes = v.u8
      var m: UInt64 = 0
      for i in 0..<16 { m |= UInt64(bytes[i] >> 7) << UInt64(i) }
      setReg(d, 4, p == .none ? m & 0xFF : m)
    case 0xF7:  // MASKMOVQ / MASKMOVDQU: byte-masked store to [rDI]
      if !modIsReg { throw Fault.ud() }
      let v: V128
      let m: V128
      let n: Int
      switch p {
      case .none:
        try mmxEnter()
        v = V128(mmGet(d), 0)
        m = V128(mmGet(modRM), 0)
        n = 8
      case .p66:
        try sseCheck()
        v = xmmGet(d)
        m = xmmGet(modRM)
        n = 16
      default: throw Fault.ud()
      }
      let sg = segOvr >= 0 ? segOvr : DS
      let base = getReg(7, adSize)
      // The address is checked even when no byte is selected (as the host does).
      if mode64 && !isCanonical(linear(sg, base)) { throw sg == SS ? Fault.ss(0) : Fault.gp(0) }
      let vb = v.u8
      let mb = m.u8
      for i in 0..<n where mb[i] & 0x80 != 0 {
        try writeMem(sg, (base &+ UInt64(i)) & sizeMask(adSize), 1, UInt64(vb[i]))
      }
    case 0x70:  // PSHUFW / PSHUFD / PSHUFHW / PSHUFLW
      switch p {
      case .none:
        try mmxCheck()
        let s = modIsReg ? mmGetST(modRM) : try readMem(eaSeg, addr(), 8)
        let i = imm
        mmxTransition()
        let w = bc(s, SIMD4<UInt16>.self)
        mmSet(
          d,
          bc(
            SIMD4<UInt16>(w[i & 3], w[(i >> 2) & 3], w[(i >> 4) & 3], w[(i >> 6) & 3]), UInt64.self)
        )
      default:
        try sseCheck()
        let s = try xmmRM(16, align: true)
        let i = imm
        switch p {
        case .p66:
          let w = s.u32
          xmmSet(
            d, v128(SIMD4<UInt32>(w[i & 3], w[(i >> 2) & 3], w[(i >> 4) & 3], w[(i >> 6) & 3])))
        case .pF3:
          let w = bc(s[1], SIMD4<UInt16>.self)
          let h = SIMD4<UInt16>(w[i & 3], w[(i >> 2) & 3], w[(i >> 4) & 3], w[(i >> 6) & 3])
          xmmSet(d, V128(s[0], bc(h, UInt64.self)))
        default:
          let w = bc(s[0], SIMD4<UInt16>.self)
          let l = SIMD4<UInt16>(w[i & 3], w[(i >> 2) & 3], w[(i >> 4) & 3], w[(i >> 6) & 3])
          xmmSet(d, V128(bc(l, UInt64.self), s[1]))
        }
      }
    case 0x71, 0x72, 0x73:  // shift groups 12/13/14 by imm8
      if !modIsReg { throw Fault.ud() }
      let op = modReg & 7
      let w = b == 0x71 ? 2 : (b == 0x72 ? 4 : 8)
      var kind: Int
      switch op {
      case 2: kind = 0
      case 4: kind = w == 8 ? -1 : 1
      case 6: kind = 2
      case 3, 7: kind = b == 0x73 && p == .p66 ? op : -1
      default: kind = -1
      }
      if kind < 0 || (p != .none && p != .p66) { throw Fault.ud() }
      if p == .none {
        try mmxCheck()
        let c = UInt64(imm)
        mmxTransition()
        mmSet(modRM, packedShift(V128(mmGet(modRM), 0), c, kind, w)[0])
      } else {
        try sseCheck()
        let c = UInt64(imm)
        let v = xmmGet(modRM)
        switch kind {
        case 3: xmmSet(modRM, byteShiftRight(v, c))
        case 7: xmmSet(modRM, byteShiftLeft(v, c))
        default: xmmSet(modRM, packedShift(v, c, kind, w))
        }
      }
    case 0xC4:  // PINSRW mm|xmm, r32/m16, imm8
      switch p {
      case .none:
        try mmxCheck()
        let v = UInt16(
          truncatingIfNeeded: modIsReg ? getReg(modRM, 4) : try readMem(eaSeg, addr(), 2))
        let i = imm & 3
        mmxTransition()
        var w = bc(mmGet(d), SIMD4<UInt16>.self)
        w[i] = v
        mmSet(d, bc(w, UInt64.self))
      case .p66:
        try sseCheck()
        let v = UInt16(
          truncatingIfNeeded: modIsReg ? getReg(modRM, 4) : try readMem(eaSeg, addr(), 2))
        let i = imm & 7
        var w = xmmGet(d).u16
        w[i] = v
        xmmSet(d, v128(w))
      default: throw Fault.ud()
      }
    case 0xC5:  // PEXTRW r32, mm|xmm, imm8
      if !modIsReg { throw Fault.ud() }
      switch p {
      case .none:
        try mmxEnter()
        let i = imm & 3
        setReg(d, 4, UInt64(bc(mmGet(modRM), SIMD4<UInt16>.self)[i]))
      case .p66:
        try sseCheck()
        let i = imm & 7
        setReg(d, 4, UInt64(xmmGet(modRM).u16[i]))
      default: throw Fault.ud()
      }
    default:
      // VMREAD/VMWRITE and AMD's SSE4a EXTRQ/INSERTQ (not implemented); the SSE3
      // opcodes here (D0, F0, 7C, 7D) are taken by execSSE first.
      if (0x78...0x7B).contains(b) { throw Fault.ud() }
      if p == .none && (b == 0x6C || b == 0x6D) { throw Fault.ud() }
      switch p {
      case .none:
        try mmxCheck()
        let s = modIsReg ? mmGetST(modRM) : try readMem(eaSeg, addr(), 8)
        guard let r = packedIntOp(b, V128(mmGetST(d), 0), V128(s, 0), mmx: true) else {
          throw Fault.ud()
        }
        mmxTransition()
        mmSet(d, r[0])
      case .p66:
        try sseCheck()
        let s = try xmmRM(16, align: true)
        guard let r = packedIntOp(b, xmmGet(d), s, mmx: false) else { throw Fault.ud() }
        xmmSet(d, r)
      default:
        throw Fault.ud()
      }
    }
  }
}
