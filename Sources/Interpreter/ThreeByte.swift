import X86

// The 0F 38 and 0F 3A opcode maps: SSSE3 (SSSE3.swift), SSE4.1/4.2 (SSE4.swift,
// SSE42String.swift) and CRC32. RIP is set by exec0F.

extension InterpreterCPU {
  func exec0F38() throws(Fault) {
    let b = try fetch8()
    let p: SSEPrefix = rep == 0xF3 ? .pF3 : rep == 0xF2 ? .pF2 : has66 ? .p66 : .none
    try decodeModRM()
    switch b {
    case 0x00...0x0B, 0x1C...0x1E:
      try ssse3(b, p, 0)
    case 0xF0, 0xF1:
      if p == .pF2 {
        try crc32(b)
      } else {
        try movbe(b, p)
      }
    default:
      if p != .p66 { throw Fault.ud() }
      try sse4Map38(b)
    }
  }

  func exec0F3A() throws(Fault) {
    let b = try fetch8()
    let p: SSEPrefix = rep == 0xF3 ? .pF3 : rep == 0xF2 ? .pF2 : has66 ? .p66 : .none
    try decodeModRM()
    // The immediate comes before any memory access (RIP-relative operands end after it).
    let imm = Int(try fetch8())
    if b == 0x0F {
      try ssse3(b, p, imm)  // PALIGNR
      return
    }
    if p != .p66 { throw Fault.ud() }
    try sse4Map3A(b, imm)
  }

  /// CRC32 r32/r64, r/m8|16|32|64 (SSE4.2): CRC-32C, bit-reflected, no inversion.
  func crc32(_ b: UInt8) throws(Fault) {
    if !hasSSE42 { throw Fault.ud() }
    let size = b == 0xF0 ? 1 : opSize
    var v = try readE(size)
    var c = UInt32(truncatingIfNeeded: getReg(modReg, 4))
    for _ in 0..<size {
      c = (c >> 8) ^ InterpreterCPU.crc32cTable[Int((c ^ UInt32(truncatingIfNeeded: v)) & 0xFF)]
      v >>= 8
    }
    setReg(modReg, rex & 8 != 0 ? 8 : 4, UInt64(c))
  }

  /// MOVBE r, m / m, r: a load or store with the bytes reversed (16/32/64-bit).
  func movbe(_ b: UInt8, _ p: SSEPrefix) throws(Fault) {
    if !hasMOVBE || modIsReg || p == .pF3 { throw Fault.ud() }
    let s = opSize
    func swap(_ v: UInt64) -> UInt64 {
      switch s {
      case 2: return UInt64(UInt16(truncatingIfNeeded: v).byteSwapped)
      case 4: return UInt64(UInt32(truncatingIfNeeded: v).byteSwapped)
      default: return v.byteSwapped
      }
    }
    if b == 0xF0 {
      setReg(modReg, s, swap(try readMem(eaSeg, addr(), s)))
    } else {
      try writeMem(eaSeg, addr(), s, swap(getReg(modReg, s)))
    }
  }

  static let crc32cTable: [UInt32] = (0..<256).map { (i: Int) -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
  }
}
