/// Bit-test operations, by their /digit in the 0F BA group.
public enum BitOp: UInt8, CaseIterable, Sendable {
  case bt = 4, bts, btr, btc
}

// More integer forms the block compiler emits for the guest instructions of the same
// name; golden-tested in Tests/TranslatorTests/X86EncoderFormsTests.swift.
extension X86Encoder {
  /// movsx dst, byte/word [mem] (dst 16/32/64-bit), or movsxd dst64, dword [mem].
  public mutating func loadSX(
    _ dst: HostReg, _ m: HostMem, _ from: OpSize, _ size: OpSize = .b64
  ) {
    precondition(from.rawValue < size.rawValue && size != .b8)
    prefixes(size: size, reg: dst.rawValue, mem: m)
    if from == .b32 {
      emit(0x63)
    } else {
      emit(0x0F)
      emit(from == .b8 ? 0xBE : 0xBF)
    }
    modrm(reg: dst.rawValue, mem: m)
  }

  /// movsx dst, src8/src16 (dst 16/32/64-bit), or movsxd dst64, src32.
  public mutating func movsx(
    _ dst: HostReg, _ src: HostReg, _ from: OpSize, _ size: OpSize = .b64
  ) {
    precondition(from.rawValue < size.rawValue && size != .b8)
    // A byte source SPL..DIL needs a REX even at a wider operand size.
    if size == .b16 { emit(0x66) }
    let rex: UInt8 = (size == .b64 ? 8 : 0) | (dst.high ? 4 : 0) | (src.high ? 1 : 0)
    if rex != 0 || (from == .b8 && (4...7).contains(src.rawValue)) { emit(0x40 | rex) }
    if from == .b32 {
      emit(0x63)
    } else {
      emit(0x0F)
      emit(from == .b8 ? 0xBE : 0xBF)
    }
    modrm(reg: dst.rawValue, rm: src)
  }

  /// cmovcc dst, [mem] (the load happens whatever the condition).
  public mutating func cmov(_ c: Cond, _ dst: HostReg, _ m: HostMem, _ size: OpSize = .b64) {
    precondition(size != .b8)
    prefixes(size: size, reg: dst.rawValue, mem: m)
    emit(0x0F)
    emit(0x40 + c.rawValue)
    modrm(reg: dst.rawValue, mem: m)
  }

  /// setcc byte [mem].
  public mutating func setcc(_ c: Cond, _ m: HostMem) {
    prefixes(size: .b8, reg: 0, mem: m)
    emit(0x0F)
    emit(0x90 + c.rawValue)
    modrm(reg: 0, mem: m)
  }

  public mutating func leave() { emit(0xC9) }

  /// not/neg [mem].
  public mutating func not(_ m: HostMem, _ size: OpSize = .b64) { unary(2, m, size) }
  public mutating func neg(_ m: HostMem, _ size: OpSize = .b64) { unary(3, m, size) }
  private mutating func unary(_ digit: UInt8, _ m: HostMem, _ size: OpSize) {
    prefixes(size: size, reg: 0, mem: m)
    emit(size == .b8 ? 0xF6 : 0xF7)
    modrm(reg: digit, mem: m)
  }

  /// cmovcc dst, src (16/32/64-bit; the 32-bit form zero-extends dst even when not taken).
  public mutating func cmov(_ c: Cond, _ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64) {
    precondition(size != .b8)
    prefixes(size: size, reg: dst.rawValue, rmReg: src)
    emit(0x0F)
    emit(0x40 + c.rawValue)
    modrm(reg: dst.rawValue, rm: src)
  }

  /// imul dst, src, imm (three-operand; the imm8 form when the immediate fits).
  public mutating func imul(_ dst: HostReg, _ src: HostReg, imm: Int32, _ size: OpSize = .b64) {
    precondition(size != .b8)
    prefixes(size: size, reg: dst.rawValue, rmReg: src)
    let short = Int32(Int8(truncatingIfNeeded: imm)) == imm
    emit(short ? 0x6B : 0x69)
    modrm(reg: dst.rawValue, rm: src)
    if short { emit(UInt8(truncatingIfNeeded: imm)) } else { emitImm(imm, size) }
  }

  /// bt/bts/btr/btc dst, src (register bit offset, taken modulo the operand size).
  public mutating func bit(_ op: BitOp, _ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64) {
    precondition(size != .b8)
    prefixes(size: size, reg: src.rawValue, rmReg: dst)
    emit(0x0F)
    emit(0xA3 + (op.rawValue - 4) << 3)
    modrm(reg: src.rawValue, rm: dst)
  }

  /// bt/bts/btr/btc dst, imm8.
  public mutating func bit(_ op: BitOp, _ dst: HostReg, imm: UInt8, _ size: OpSize = .b64) {
    precondition(size != .b8)
    prefixes(size: size, reg: 0, rmReg: dst)
    emit(0x0F)
    emit(0xBA)
    modrm(reg: op.rawValue, rm: dst)
    emit(imm)
  }

  /// cwd/cdq/cqo: the accumulator's sign into rdx (by operand size; no flags).
  public mutating func cdq(_ size: OpSize) {
    precondition(size != .b8)
    if size == .b16 { emit(0x66) }
    if size == .b64 { emit(0x48) }
    emit(0x99)
  }

  /// cbw/cwde/cdqe: the accumulator sign-extended in place (by operand size; no flags).
  public mutating func cdqe(_ size: OpSize) {
    precondition(size != .b8)
    if size == .b16 { emit(0x66) }
    if size == .b64 { emit(0x48) }
    emit(0x98)
  }

  /// One-operand mul/imul/div/idiv src (F6/F7 /4-/7): rdx:rax (ax for bytes) with src.
  public mutating func mul(_ src: HostReg, _ size: OpSize = .b64) { mulDiv(4, src, size) }
  public mutating func imul1(_ src: HostReg, _ size: OpSize = .b64) { mulDiv(5, src, size) }
  public mutating func div(_ src: HostReg, _ size: OpSize = .b64) { mulDiv(6, src, size) }
  public mutating func idiv(_ src: HostReg, _ size: OpSize = .b64) { mulDiv(7, src, size) }
  private mutating func mulDiv(_ digit: UInt8, _ src: HostReg, _ size: OpSize) {
    prefixes(size: size, reg: 0, rmReg: src, byteRegs: [src])
    emit(size == .b8 ? 0xF6 : 0xF7)
    modrm(reg: digit, rm: src)
  }

  /// cmpxchg/xadd [mem], src (`lock`: with the LOCK prefix) and dst, src (0F B0/B1, 0F C0/C1).
  public mutating func cmpxchg(
    _ m: HostMem, _ src: HostReg, _ size: OpSize = .b64, lock: Bool = false
  ) {
    exchange(0xB0, m, src, size, lock: lock)
  }
  public mutating func xadd(_ m: HostMem, _ src: HostReg, _ size: OpSize = .b64, lock: Bool = false)
  {
    exchange(0xC0, m, src, size, lock: lock)
  }
  public mutating func cmpxchg(_ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64) {
    exchange(0xB0, dst, src, size)
  }
  public mutating func xadd(_ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64) {
    exchange(0xC0, dst, src, size)
  }
  private mutating func exchange(
    _ op8: UInt8, _ m: HostMem, _ src: HostReg, _ size: OpSize, lock: Bool
  ) {
    // 66 F0 as assemblers order them, then REX.
    if lock {
      if size == .b16 { emit(0x66) }
      emit(0xF0)
    }
    prefixes(size: lock && size == .b16 ? .b32 : size, reg: src.rawValue, mem: m, byteRegs: [src])
    emit(0x0F)
    emit(size == .b8 ? op8 : op8 + 1)
    modrm(reg: src.rawValue, mem: m)
  }
  private mutating func exchange(_ op8: UInt8, _ dst: HostReg, _ src: HostReg, _ size: OpSize) {
    prefixes(size: size, reg: src.rawValue, rmReg: dst, byteRegs: [dst, src])
    emit(0x0F)
    emit(size == .b8 ? op8 : op8 + 1)
    modrm(reg: src.rawValue, rm: dst)
  }

  /// bswap r32/r64
  public mutating func bswap(_ r: HostReg, _ size: OpSize = .b64) {
    precondition(size == .b32 || size == .b64)
    prefixes(size: size, reg: 0, rmReg: r)
    emit(0x0F)
    emit(0xC8 + r.low)
  }

  /// bsf/bsr dst, src (16-, 32- or 64-bit)
  public mutating func bitScan(reverse: Bool, _ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64)
  {
    precondition(size != .b8)
    prefixes(size: size, reg: dst.rawValue, rmReg: src)
    emit(0x0F)
    emit(reverse ? 0xBD : 0xBC)
    modrm(reg: dst.rawValue, rm: src)
  }
}
