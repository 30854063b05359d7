/// A small x86-64 encoder: just enough to emit every form the generator covers.
///
/// Register numbers are encoding numbers 0...15 (RAX, RCX, RDX, RBX, RSP, RBP,
/// RSI, RDI, R8...R15). For byte operands 0...15 mean AL...R15B (4...7 are SPL,
/// BPL, SIL, DIL and need a REX prefix) and 16...19 mean AH, CH, DH, BH (which
/// forbid REX).

/// A memory operand.
public struct MemOperand: Equatable {
  public var base: Int?
  public var index: Int?
  public var scale: Int = 1
  public var disp: Int64 = 0
  /// RIP-relative: `disp` is computed at layout time so that the operand
  /// addresses `target`.
  public var ripRelative = false
  /// Force a 32-bit displacement even when 8 bits would do.
  public var wideDisp = false
  /// 0x67: 32-bit address computation.
  public var addr32 = false
  /// The linear address the generator aimed at (for RIP-relative: the target).
  public var target: UInt64 = 0
}

public enum RMOperand: Equatable {
  case reg(Int)
  case mem(MemOperand)

  var isMem: Bool {
    if case .mem = self { return true }
    return false
  }
}

/// One encoded instruction plus what layout must patch in.
public struct Encoded {
  public var bytes: [UInt8]
  /// Offset of a RIP-relative disp32 and the address it must reach.
  public var ripFixup: (offset: Int, target: UInt64)?
}

enum Asm {
  static let regNames64 = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
  ]

  /// Little-endian immediate of `size` bytes.
  static func imm(_ v: UInt64, _ size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
  }

  /// Encodes prefixes, REX, opcode, ModRM/SIB/displacement and immediate.
  ///
  /// - size: operand size (1, 2, 4, 8). 2 adds 0x66; 8 sets REX.W unless `noW`.
  /// - reg: the ModRM.reg field (register number or /digit).
  /// - regIsByte / rmIsByte: whether `reg` / a register `rm` are byte registers.
  static func encode(
    prefixes: [UInt8] = [], size: Int, noW: Bool = false, opcode: [UInt8], reg: Int,
    regIsByte: Bool = false, rm: RMOperand, rmIsByte: Bool = false, imm: [UInt8] = []
  ) -> Encoded {
    var out: [UInt8] = prefixes
    var rex: UInt8 = 0
    var forceRex = false
    var forbidRex = false
    if size == 2 { out.append(0x66) }
    if size == 8 && !noW { rex |= 8 }
    func noteByte(_ r: Int) {
      if r >= 16 {
        forbidRex = true
      } else if r >= 4 && r <= 7 {
        forceRex = true
      }
    }
    var regBits = reg
    if regIsByte {
      noteByte(reg)
      if reg >= 16 { regBits = reg - 12 }
    }
    if regBits >= 8 { rex |= 4 }
    var modrm: UInt8 = UInt8((regBits & 7) << 3)
    var tail: [UInt8] = []
    var fix: Int? = nil
    var fixTarget: UInt64 = 0
    switch rm {
    case .reg(let r):
      var bits = r
      if rmIsByte {
        noteByte(r)
        if r >= 16 { bits = r - 12 }
      }
      if bits >= 8 { rex |= 1 }
      modrm |= 0xC0 | UInt8(bits & 7)
    case .mem(let m):
      if m.addr32 { out.append(0x67) }
      if m.ripRelative {
        modrm |= 0x05
        fix = tail.count
        fixTarget = m.target
        tail += [0, 0, 0, 0]
      } else if m.base == nil {
        // SIB with no base: [index*scale + disp32] or [disp32].
        modrm |= 0x04
        let idx = m.index ?? 4
        if idx >= 8 { rex |= 2 }
        tail.append(scaleBits(m.scale) << 6 | UInt8((idx & 7) << 3) | 5)
        tail += Asm.imm(UInt64(bitPattern: m.disp), 4)
      } else {
        let b = m.base!
        if b >= 8 { rex |= 1 }
        let needSIB = m.index != nil || (b & 7) == 4
        var mod: UInt8
        if m.disp == 0 && (b & 7) != 5 && !m.wideDisp {
          mod = 0
        } else if m.disp >= -128 && m.disp <= 127 && !m.wideDisp {
          mod = 1
        } else {
          mod = 2
        }
        if needSIB {
          modrm |= mod << 6 | 0x04
          let idx = m.index ?? 4
          if idx >= 8 { rex |= 2 }
          tail.append(scaleBits(m.scale) << 6 | UInt8((idx & 7) << 3) | UInt8(b & 7))
        } else {
          modrm |= mod << 6 | UInt8(b & 7)
        }
        if mod == 1 { tail.append(UInt8(truncatingIfNeeded: m.disp)) }
        if mod == 2 { tail += Asm.imm(UInt64(bitPattern: m.disp), 4) }
      }
    }
    precondition(!(forbidRex && (rex != 0 || forceRex)), "AH..BH cannot be encoded with REX")
    if rex != 0 || forceRex { out.append(0x40 | rex) }
    out += opcode
    out.append(modrm)
    let tailStart = out.count
    out += tail
    out += imm
    var e = Encoded(bytes: out, ripFixup: nil)
    if let f = fix { e.ripFixup = (tailStart + f, fixTarget) }
    return e
  }

  /// Opcode with the register in its low three bits (B8+r, 50+r, C8+r, 90+r).
  static func encodeOpReg(
    prefixes: [UInt8] = [], size: Int, noW: Bool = false, opcode: [UInt8], reg: Int,
    isByte: Bool = false, imm: [UInt8] = []
  ) -> Encoded {
    var out = prefixes
    if size == 2 { out.append(0x66) }
    var rex: UInt8 = 0
    var bits = reg
    if isByte && reg >= 16 { bits = reg - 12 }
    if size == 8 && !noW { rex |= 8 }
    if bits >= 8 { rex |= 1 }
    if rex != 0 || (isByte && reg >= 4 && reg <= 7) { out.append(0x40 | rex) }
    var op = opcode
    op[op.count - 1] |= UInt8(bits & 7)
    out += op
    out += imm
    return Encoded(bytes: out, ripFixup: nil)
  }

  static func scaleBits(_ s: Int) -> UInt8 {
    switch s {
    case 2: return 1
    case 4: return 2
    case 8: return 3
    default: return 0
    }
  }
}
