/// A host x86-64 register, numbered as the hardware encodes it.
public enum HostReg: UInt8, CaseIterable, Sendable {
  case rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15

  var low: UInt8 { rawValue & 7 }
  var high: Bool { rawValue >= 8 }
}

/// Operand size in bytes: 1, 2, 4 or 8.
public enum OpSize: Int, CaseIterable, Sendable {
  case b8 = 1, b16 = 2, b32 = 4, b64 = 8
}

/// A memory operand: [base + index * scale + disp]. No RIP-relative or absolute forms:
/// generated code addresses everything through a base register.
public struct HostMem: Sendable {
  public var base: HostReg
  public var index: HostReg?
  public var scale: UInt8
  public var disp: Int32

  public init(_ base: HostReg, _ disp: Int32 = 0, index: HostReg? = nil, scale: UInt8 = 1) {
    precondition(index != .rsp, "rsp cannot be an index")
    precondition([1, 2, 4, 8].contains(scale))
    self.base = base
    self.index = index
    self.scale = scale
    self.disp = disp
  }
}

/// The eight classic ALU operations, by their /digit in the 80/81/83 group.
public enum ALUOp: UInt8, CaseIterable, Sendable {
  case add = 0, or, adc, sbb, and, sub, xor, cmp
}

/// Shift and rotate operations, by their /digit in the C0/C1/D0-D3 group.
public enum ShiftOp: UInt8, CaseIterable, Sendable {
  case rol = 0, ror, rcl, rcr, shl, shr, sar = 7
}

/// Condition codes as the hardware numbers them (Jcc = 0F 80+cc, SETcc = 0F 90+cc).
public enum Cond: UInt8, CaseIterable, Sendable {
  case o = 0, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g
}

/// A label in code being generated: bound to an offset once, referenced by rel32 jumps.
public struct Label: Hashable, Sendable { let id: Int }

/// Encodes the host instructions the translator emits. Every form here has a golden test
/// against the toolchain's assembler (Tests/TranslatorTests/X86EncoderTests.swift); add one
/// with each new form.
public struct X86Encoder {
  public private(set) var bytes: [UInt8] = []
  private var labels: [Int?] = []
  private var fixups: [(at: Int, label: Int)] = []

  public init() {}

  public var count: Int { bytes.count }

  // MARK: Prefixes and operand bytes (internal: X86EncoderForms.swift uses them too)

  mutating func emit(_ b: UInt8) { bytes.append(b) }
  mutating func emit32(_ v: Int32) {
    let u = UInt32(bitPattern: v)
    for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: u >> (8 * UInt32(i)))) }
  }
  mutating func emit16(_ v: UInt16) {
    bytes.append(UInt8(truncatingIfNeeded: v))
    bytes.append(UInt8(truncatingIfNeeded: v >> 8))
  }

  /// The 66 prefix and REX for an instruction with `reg` in ModRM.reg (a register number)
  /// and `rm` in ModRM.rm or a memory operand. `byteRegs` are byte registers, which need a
  /// REX to mean SPL/BPL/SIL/DIL instead of AH/CH/DH/BH.
  mutating func prefixes(
    size: OpSize, reg: UInt8, rmReg: HostReg? = nil, mem: HostMem? = nil,
    byteRegs: [HostReg] = []
  ) {
    if size == .b16 { emit(0x66) }
    var rex: UInt8 = 0
    if size == .b64 { rex |= 8 }
    if reg >= 8 { rex |= 4 }
    if let m = mem {
      if m.index?.high == true { rex |= 2 }
      if m.base.high { rex |= 1 }
    }
    if let r = rmReg, r.high { rex |= 1 }
    let needsByteREX = size == .b8 && byteRegs.contains { (4...7).contains($0.rawValue) }
    if rex != 0 || needsByteREX { emit(0x40 | rex) }
  }

  /// ModRM (and SIB and displacement) for a register-direct operand.
  mutating func modrm(reg: UInt8, rm: HostReg) {
    emit(0xC0 | (reg & 7) << 3 | rm.low)
  }

  /// ModRM, SIB and displacement for a memory operand, in the shortest form.
  mutating func modrm(reg: UInt8, mem m: HostMem) {
    let needsSIB = m.index != nil || m.base.low == 4
    // [rbp]/[r13] have no no-displacement form: mod 00 with rm 101 means RIP-relative.
    let mod: UInt8
    if m.disp == 0 && m.base.low != 5 {
      mod = 0
    } else if Int32(Int8(truncatingIfNeeded: m.disp)) == m.disp {
      mod = 1
    } else {
      mod = 2
    }
    emit(mod << 6 | (reg & 7) << 3 | (needsSIB ? 4 : m.base.low))
    if needsSIB {
      let ss: UInt8 = [1: 0, 2: 1, 4: 2, 8: 3][m.scale]!
      let idx: UInt8 = m.index?.low ?? 4
      emit(ss << 6 | idx << 3 | m.base.low)
    }
    if mod == 1 { emit(UInt8(bitPattern: Int8(truncatingIfNeeded: m.disp))) }
    if mod == 2 { emit32(m.disp) }
  }

  // MARK: Moves

  /// mov dst, src (register to register).
  public mutating func mov(_ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64) {
    prefixes(size: size, reg: src.rawValue, rmReg: dst, byteRegs: [dst, src])
    emit(size == .b8 ? 0x88 : 0x89)
    modrm(reg: src.rawValue, rm: dst)
  }

  /// Loads a 64-bit constant into dst in the shortest form: a zero-extending 32-bit move,
  /// a sign-extended imm32, or a 10-byte movabs.
  public mutating func movImm(_ dst: HostReg, _ value: UInt64) {
    if value <= UInt64(UInt32.max) {
      prefixes(size: .b32, reg: 0, rmReg: dst)
      emit(0xB8 + dst.low)
      emit32(Int32(bitPattern: UInt32(value)))
    } else if Int64(bitPattern: value) >= Int64(Int32.min) && Int64(bitPattern: value) < 0 {
      prefixes(size: .b64, reg: 0, rmReg: dst)
      emit(0xC7)
      modrm(reg: 0, rm: dst)
      emit32(Int32(truncatingIfNeeded: Int64(bitPattern: value)))
    } else {
      prefixes(size: .b64, reg: 0, rmReg: dst)
      emit(0xB8 + dst.low)
      for i in 0..<8 { emit(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }
  }

  /// mov dst, [mem] at the given size (8- and 16-bit loads merge into dst as the hardware does).
  public mutating func load(_ dst: HostReg, _ m: HostMem, _ size: OpSize = .b64) {
    prefixes(size: size, reg: dst.rawValue, mem: m, byteRegs: [dst])
    emit(size == .b8 ? 0x8A : 0x8B)
    modrm(reg: dst.rawValue, mem: m)
  }

  /// mov [mem], src at the given size.
  public mutating func store(_ m: HostMem, _ src: HostReg, _ size: OpSize = .b64) {
    prefixes(size: size, reg: src.rawValue, mem: m, byteRegs: [src])
    emit(size == .b8 ? 0x88 : 0x89)
    modrm(reg: src.rawValue, mem: m)
  }

  /// mov [mem], imm (sign-extended imm32 for 64-bit stores).
  public mutating func storeImm(_ m: HostMem, _ imm: Int32, _ size: OpSize = .b64) {
    prefixes(size: size, reg: 0, mem: m)
    emit(size == .b8 ? 0xC6 : 0xC7)
    modrm(reg: 0, mem: m)
    switch size {
    case .b8: emit(UInt8(truncatingIfNeeded: imm))
    case .b16: emit16(UInt16(truncatingIfNeeded: imm))
    default: emit32(imm)
    }
  }

  /// movzx dst32, byte/word [mem]: a zero-extending narrow load.
  public mutating func loadZX(_ dst: HostReg, _ m: HostMem, _ size: OpSize) {
    precondition(size == .b8 || size == .b16)
    prefixes(size: .b32, reg: dst.rawValue, mem: m)
    emit(0x0F)
    emit(size == .b8 ? 0xB6 : 0xB7)
    modrm(reg: dst.rawValue, mem: m)
  }

  /// lea dst, [mem] (64-bit, or 32-bit to truncate the address).
  public mutating func lea(_ dst: HostReg, _ m: HostMem, _ size: OpSize = .b64) {
    precondition(size == .b32 || size == .b64)
    prefixes(size: size, reg: dst.rawValue, mem: m)
    emit(0x8D)
    modrm(reg: dst.rawValue, mem: m)
  }

  // MARK: Arithmetic

  /// op dst, src (register to register); sets the flags as the guest instruction would.
  public mutating func alu(_ op: ALUOp, _ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64) {
    prefixes(size: size, reg: src.rawValue, rmReg: dst, byteRegs: [dst, src])
    emit(op.rawValue << 3 | (size == .b8 ? 0 : 1))
    modrm(reg: src.rawValue, rm: dst)
  }

  /// op dst, [mem].
  public mutating func alu(_ op: ALUOp, _ dst: HostReg, _ m: HostMem, _ size: OpSize = .b64) {
    prefixes(size: size, reg: dst.rawValue, mem: m, byteRegs: [dst])
    emit(op.rawValue << 3 | (size == .b8 ? 2 : 3))
    modrm(reg: dst.rawValue, mem: m)
  }

  /// op [mem], src.
  public mutating func alu(_ op: ALUOp, _ m: HostMem, _ src: HostReg, _ size: OpSize = .b64) {
    prefixes(size: size, reg: src.rawValue, mem: m, byteRegs: [src])
    emit(op.rawValue << 3 | (size == .b8 ? 0 : 1))
    modrm(reg: src.rawValue, mem: m)
  }

  /// op dst, imm (imm8 form when the immediate fits; sign-extended for 64-bit).
  public mutating func alu(_ op: ALUOp, _ dst: HostReg, imm: Int32, _ size: OpSize = .b64) {
    let short = Int32(Int8(truncatingIfNeeded: imm)) == imm
    if dst == .rax && (size == .b8 || !short) {
      // The accumulator's own opcode is a byte shorter; assemblers choose it.
      if size == .b16 { emit(0x66) }
      if size == .b64 { emit(0x48) }
      emit(op.rawValue << 3 | (size == .b8 ? 4 : 5))
      emitImm(imm, size)
      return
    }
    prefixes(size: size, reg: 0, rmReg: dst, byteRegs: [dst])
    if size == .b8 {
      emit(0x80)
      modrm(reg: op.rawValue, rm: dst)
      emit(UInt8(truncatingIfNeeded: imm))
      return
    }
    emit(short ? 0x83 : 0x81)
    modrm(reg: op.rawValue, rm: dst)
    if short {
      emit(UInt8(truncatingIfNeeded: imm))
    } else if size == .b16 {
      emit16(UInt16(truncatingIfNeeded: imm))
    } else {
      emit32(imm)
    }
  }

  /// op [mem], imm.
  public mutating func alu(_ op: ALUOp, _ m: HostMem, imm: Int32, _ size: OpSize = .b64) {
    prefixes(size: size, reg: 0, mem: m)
    if size == .b8 {
      emit(0x80)
      modrm(reg: op.rawValue, mem: m)
      emit(UInt8(truncatingIfNeeded: imm))
      return
    }
    let short = Int32(Int8(truncatingIfNeeded: imm)) == imm
    emit(short ? 0x83 : 0x81)
    modrm(reg: op.rawValue, mem: m)
    if short {
      emit(UInt8(truncatingIfNeeded: imm))
    } else if size == .b16 {
      emit16(UInt16(truncatingIfNeeded: imm))
    } else {
      emit32(imm)
    }
  }

  /// test a, b.
  public mutating func test(_ a: HostReg, _ b: HostReg, _ size: OpSize = .b64) {
    prefixes(size: size, reg: b.rawValue, rmReg: a, byteRegs: [a, b])
    emit(size == .b8 ? 0x84 : 0x85)
    modrm(reg: b.rawValue, rm: a)
  }

  /// test dst, imm.
  public mutating func test(_ dst: HostReg, imm: Int32, _ size: OpSize = .b64) {
    if dst == .rax {
      if size == .b16 { emit(0x66) }
      if size == .b64 { emit(0x48) }
      emit(size == .b8 ? 0xA8 : 0xA9)
    } else {
      prefixes(size: size, reg: 0, rmReg: dst, byteRegs: [dst])
      emit(size == .b8 ? 0xF6 : 0xF7)
      modrm(reg: 0, rm: dst)
    }
    emitImm(imm, size)
  }

  /// An immediate of the operand size (at most 32 bits; 64-bit operands sign-extend it).
  mutating func emitImm(_ imm: Int32, _ size: OpSize) {
    switch size {
    case .b8: emit(UInt8(truncatingIfNeeded: imm))
    case .b16: emit16(UInt16(truncatingIfNeeded: imm))
    default: emit32(imm)
    }
  }

  /// The F6/F7 and FE/FF unary group: inc, dec, not, neg.
  private mutating func unary(_ opcode8: UInt8, _ digit: UInt8, _ dst: HostReg, _ size: OpSize) {
    prefixes(size: size, reg: 0, rmReg: dst, byteRegs: [dst])
    emit(size == .b8 ? opcode8 : opcode8 + 1)
    modrm(reg: digit, rm: dst)
  }
  public mutating func inc(_ dst: HostReg, _ size: OpSize = .b64) { unary(0xFE, 0, dst, size) }
  public mutating func dec(_ dst: HostReg, _ size: OpSize = .b64) { unary(0xFE, 1, dst, size) }
  public mutating func not(_ dst: HostReg, _ size: OpSize = .b64) { unary(0xF6, 2, dst, size) }
  public mutating func neg(_ dst: HostReg, _ size: OpSize = .b64) { unary(0xF6, 3, dst, size) }

  /// imul dst, src (two-operand, 16/32/64-bit).
  public mutating func imul(_ dst: HostReg, _ src: HostReg, _ size: OpSize = .b64) {
    precondition(size != .b8)
    prefixes(size: size, reg: dst.rawValue, rmReg: src)
    emit(0x0F)
    emit(0xAF)
    modrm(reg: dst.rawValue, rm: src)
  }

  /// shift dst, imm8 (the count-1 form when the count is 1, as assemblers choose).
  public mutating func shift(_ op: ShiftOp, _ dst: HostReg, imm: UInt8, _ size: OpSize = .b64) {
    prefixes(size: size, reg: 0, rmReg: dst, byteRegs: [dst])
    if imm == 1 {
      emit(size == .b8 ? 0xD0 : 0xD1)
      modrm(reg: op.rawValue, rm: dst)
    } else {
      emit(size == .b8 ? 0xC0 : 0xC1)
      modrm(reg: op.rawValue, rm: dst)
      emit(imm)
    }
  }

  /// shift dst, cl.
  public mutating func shiftCL(_ op: ShiftOp, _ dst: HostReg, _ size: OpSize = .b64) {
    prefixes(size: size, reg: 0, rmReg: dst, byteRegs: [dst])
    emit(size == .b8 ? 0xD2 : 0xD3)
    modrm(reg: op.rawValue, rm: dst)
  }

  /// setcc dst8.
  public mutating func setcc(_ c: Cond, _ dst: HostReg) {
    prefixes(size: .b8, reg: 0, rmReg: dst, byteRegs: [dst])
    emit(0x0F)
    emit(0x90 + c.rawValue)
    modrm(reg: 0, rm: dst)
  }

  // MARK: Stack and flags

  public mutating func push(_ r: HostReg) {
    if r.high { emit(0x41) }
    emit(0x50 + r.low)
  }
  public mutating func pop(_ r: HostReg) {
    if r.high { emit(0x41) }
    emit(0x58 + r.low)
  }
  /// AH <- SF:ZF:0:AF:0:PF:1:CF, and back (with SETO/ADD AL these save and restore the flags cheaply).
  public mutating func lahf() { emit(0x9F) }
  public mutating func sahf() { emit(0x9E) }
  public mutating func pushfq() { emit(0x9C) }
  public mutating func popfq() { emit(0x9D) }

  // MARK: Control flow

  public mutating func ret() { emit(0xC3) }

  /// call reg / jmp reg.
  public mutating func call(_ r: HostReg) {
    prefixes(size: .b32, reg: 0, rmReg: r)
    emit(0xFF)
    modrm(reg: 2, rm: r)
  }
  public mutating func jmp(_ r: HostReg) {
    prefixes(size: .b32, reg: 0, rmReg: r)
    emit(0xFF)
    modrm(reg: 4, rm: r)
  }

  public mutating func newLabel() -> Label {
    labels.append(nil)
    return Label(id: labels.count - 1)
  }

  public mutating func bind(_ l: Label) {
    precondition(labels[l.id] == nil, "label bound twice")
    labels[l.id] = bytes.count
    for f in fixups where f.label == l.id { patch(f.at, to: bytes.count) }
    fixups.removeAll { $0.label == l.id }
  }

  /// jmp rel32 to a label (always the 5-byte form, so code size does not depend on distance).
  public mutating func jmp(_ l: Label) {
    emit(0xE9)
    reference(l)
  }

  /// jcc rel32 to a label.
  public mutating func jcc(_ c: Cond, _ l: Label) {
    emit(0x0F)
    emit(0x80 + c.rawValue)
    reference(l)
  }

  private mutating func reference(_ l: Label) {
    let at = bytes.count
    emit32(0)
    if let target = labels[l.id] { patch(at, to: target) } else { fixups.append((at, l.id)) }
  }

  private mutating func patch(_ at: Int, to target: Int) {
    let rel = Int32(target - (at + 4))
    let u = UInt32(bitPattern: rel)
    for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: u >> (8 * UInt32(i))) }
  }

  /// True when every referenced label has been bound.
  public var isResolved: Bool { fixups.isEmpty }
}
