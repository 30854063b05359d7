/// SSE forms. The translator runs a guest's SSE instruction as the host's own on host XMM
/// registers (Interpreter/BlockCompilerSSE.swift), so these take the guest's mandatory
/// prefix and opcode as given; XMM and GPR operands are register numbers (0-15).
extension X86Encoder {
  /// `[prefix] [REX] 0F opcode ModRM [imm8]`, register `rm` in ModRM.rm; `w`: REX.W.
  public mutating func sse(
    _ prefix: UInt8?, _ opcode: UInt8, reg: UInt8, rm: UInt8, w: Bool = false, imm: UInt8? = nil
  ) {
    if let prefix { emit(prefix) }
    let rex: UInt8 = (w ? 8 : 0) | (reg >= 8 ? 4 : 0) | (rm >= 8 ? 1 : 0)
    if rex != 0 { emit(0x40 | rex) }
    emit(0x0F)
    emit(opcode)
    emit(0xC0 | (reg & 7) << 3 | (rm & 7))
    if let imm { emit(imm) }
  }

  /// `[prefix] [REX] 0F opcode ModRM [imm8]` with a memory operand.
  public mutating func sse(
    _ prefix: UInt8?, _ opcode: UInt8, reg: UInt8, mem m: HostMem, w: Bool = false,
    imm: UInt8? = nil
  ) {
    if let prefix { emit(prefix) }
    var rex: UInt8 = (w ? 8 : 0) | (reg >= 8 ? 4 : 0)
    if m.index?.high == true { rex |= 2 }
    if m.base.high { rex |= 1 }
    if rex != 0 { emit(0x40 | rex) }
    emit(0x0F)
    emit(opcode)
    modrm(reg: reg, mem: m)
    if let imm { emit(imm) }
  }

  /// movdqu xmm, [m]
  public mutating func movdqu(xmm: UInt8, _ m: HostMem) { sse(0xF3, 0x6F, reg: xmm, mem: m) }
  /// movdqu [m], xmm
  public mutating func movdqu(_ m: HostMem, xmm: UInt8) { sse(0xF3, 0x7F, reg: xmm, mem: m) }
}
