import X86

// One decoder and one representation for the hot integer forms (MOV/ALU/TEST/LEA r/m,
// Jcc/JMP/CALL/RET, PUSH/POP, shifts, INC/DEC, NOT/NEG, MOVZX/MOVSX, IMUL, CMOVcc/SETcc,
// MUL/IMUL/DIV/IDIV, CMPXCHG/XADD, CBW/CWD and their wider forms).
//
// `step()` decodes every instruction's prefixes with `decodeStart`, then these forms with
// `decodeForm` into a `DecodedInsn` and runs it with `runDecoded` (FormSemantics.swift);
// anything else goes to `execute()`. The decode cache stores the same structure for
// cacheable code (DecodeCache.swift), and the translator compiles from it
// (TranslatorSupport.swift), so each form's decoding and semantics exist once.
// `decodeOperand` is the only ModRM/SIB/displacement decoder; the other instructions'
// `decodeModRM()` goes through it too.

/// One decoded instruction; in the decode cache, one entry (see DecodeCache.swift).
struct DecodedInsn {
  /// Host address of the first byte | mode << 56; 0 = empty slot (decode cache only).
  var host: UInt = 0
  /// The instruction bytes (first 16) and the masks selecting its `len` bytes (decode cache only).
  var b0: UInt64 = 0
  var b1: UInt64 = 0
  var m0: UInt64 = 0
  var m1: UInt64 = 0
  /// Immediate operand (already masked/sign-extended as the handler needs it).
  var imm: UInt64 = 0
  /// Memory operand displacement, or branch displacement (see `disp`).
  var disp32: Int32 = 0
  /// Handler (DC.*); DC.none: not a decoded form.
  var kind: UInt8 = 0
  var len: UInt8 = 0
  /// Operand size in bytes.
  var size: UInt8 = 0
  /// ALU/shift operation, condition code, or source size.
  var op: UInt8 = 0
  /// ModRM.reg (with REX.R) or the register of a one-byte register form.
  var reg: UInt8 = 0
  /// Register operand (isReg) or base register (0xFF: none).
  var rm: UInt8 = 0xFF
  var index: UInt8 = 0xFF
  var scale: UInt8 = 0
  var seg: UInt8 = 0
  var rex: UInt8 = 0
  /// `isReg` (bit 0) and `ripRel` (bit 1), packed so the address size fits the cache line.
  var operandFlags: UInt8 = 0
  /// Address size in bytes (2, 4 or 8): the effective address wraps there.
  var asize: UInt8 = 8
  // 64 bytes: one cache line.

  /// The r/m operand is a register (`rm`), not memory.
  var isReg: Bool {
    @inline(__always) get { operandFlags & 1 != 0 }
    set { operandFlags = newValue ? operandFlags | 1 : operandFlags & ~1 }
  }

  /// The memory operand is RIP-relative (64-bit mode): `disp` from the instruction's end.
  var ripRel: Bool {
    @inline(__always) get { operandFlags & 2 != 0 }
    set { operandFlags = newValue ? operandFlags | 2 : operandFlags & ~2 }
  }

  /// A LOCK prefix is allowed: a read-modify-write of memory (`checkLock`'s forms).
  var lockable: Bool {
    if isReg { return false }
    switch kind {
    case DC.aluEG, DC.aluEI: return op & 7 != 7  // not CMP
    case DC.incdec, DC.not, DC.neg, DC.cmpxchg, DC.xadd: return true
    default: return false
    }
  }

  /// Displacements are at most 32 bits (sign-extended), or an unsigned disp16/rel16.
  var disp: UInt64 {
    @inline(__always) get { UInt64(bitPattern: Int64(disp32)) }
    set { disp32 = Int32(truncatingIfNeeded: newValue) }
  }
}

/// Handler indices.
enum DC {
  static let none: UInt8 = 0
  static let aluEG: UInt8 = 1
  static let aluGE: UInt8 = 2
  static let aluAI: UInt8 = 3
  static let aluEI: UInt8 = 4
  static let test: UInt8 = 5
  static let movEG: UInt8 = 6
  static let movGE: UInt8 = 7
  static let lea: UInt8 = 8
  static let movsxd: UInt8 = 9
  static let jcc: UInt8 = 10
  static let jmp: UInt8 = 11
  static let call: UInt8 = 12
  static let ret: UInt8 = 13
  static let pushR: UInt8 = 14
  static let popR: UInt8 = 15
  static let movRI: UInt8 = 16
  static let shift: UInt8 = 17
  static let incdec: UInt8 = 18
  static let callInd: UInt8 = 19
  static let jmpInd: UInt8 = 20
  static let pushE: UInt8 = 21
  static let movzx: UInt8 = 22
  static let movsx: UInt8 = 23
  static let imul: UInt8 = 24
  static let cmov: UInt8 = 25
  static let setcc: UInt8 = 26
  static let testI: UInt8 = 27
  static let movEI: UInt8 = 28
  static let leave: UInt8 = 29
  static let nop: UInt8 = 30
  // Forms added for the translator (numbered apart from the ones above).
  static let not: UInt8 = 40
  static let neg: UInt8 = 41
  /// CMPXCHG and XADD r/m, r (0F B0/B1, 0F C0/C1); LOCK allowed on a memory operand.
  static let cmpxchg: UInt8 = 42
  static let xadd: UInt8 = 43
  /// CBW/CWDE/CDQE (98) and CWD/CDQ/CQO (99).
  static let cbw: UInt8 = 44
  static let cwd: UInt8 = 45
  /// F6/F7 /4-/7: MUL, IMUL, DIV, IDIV (`op` is the /digit).
  static let mulDiv: UInt8 = 46
}

extension InterpreterCPU {
  /// Resets the per-instruction decode state and reads the prefixes (legacy and REX) at
  /// the fetch position; returns the opcode byte.
  @inline(__always) func decodeStart() throws(Fault) -> UInt8 {
    var b = try fetch8()
    opSize = defOpSize
    adSize = codeSize
    segOvr = -1
    rex = 0
    rep = 0
    lockPrefix = false
    has66 = false
    if b & 0xF0 == 0x40 && mode64 {
      // REX alone is the common 64-bit case: no trip through the prefix loop.
      rex = b
      b = try fetch8()
      if isPrefix(b) {
        b = try decodePrefixes(b)
      } else if rex & 8 != 0 {
        opSize = 8
      }
    } else if isPrefix(b) {
      b = try decodePrefixes(b)
    }
    return b
  }

  /// The ModRM byte and the SIB byte and displacement after it, for any address size.
  @inline(__always) func decodeOperand(_ e: UnsafeMutablePointer<DecodedInsn>) throws(Fault) {
    let m = Int(try fetch8())
    e.pointee.reg = UInt8(((m >> 3) & 7) | (Int(rex & 4) << 1))
    if m >= 0xC0 {
      e.pointee.operandFlags = 1
      e.pointee.rm = UInt8((m & 7) | (Int(rex & 1) << 3))
      return
    }
    try decodeMemOperand(m, e)
  }

  func decodeMemOperand(_ m: Int, _ e: UnsafeMutablePointer<DecodedInsn>) throws(Fault) {
    let mod = m >> 6
    let rmf = m & 7
    var s = DS
    var base = 0xFF
    var index = 0xFF
    var scale = 0
    var disp: UInt64 = 0
    var ripRel = false
    if adSize == 2 {
      // 16-bit forms are base + index with scale 1: BX/BP plus SI/DI.
      switch rmf {
      case 0, 1:
        base = 3
        index = 6 + rmf
      case 2, 3:
        base = 5
        index = 4 + rmf
        s = SS
      case 4: base = 6
      case 5: base = 7
      case 6:
        if mod == 0 {
          disp = try fetch16()
        } else {
          base = 5
          s = SS
        }
      default: base = 3
      }
      if mod == 1 { disp = sext(UInt64(try fetch8()), 1) } else if mod == 2 { disp = try fetch16() }
    } else {
      if rmf == 4 {
        let sib = Int(try fetch8())
        let idx = ((sib >> 3) & 7) | (Int(rex & 2) << 2)
        let bse = sib & 7
        if idx != 4 {
          index = idx
          scale = sib >> 6
        }
        if bse == 5 && mod == 0 {
          disp = sext(try fetch32(), 4)
        } else {
          base = bse | (Int(rex & 1) << 3)
          if base == 4 || base == 5 { s = SS }  // RSP/RBP, not R12/R13
        }
      } else if rmf == 5 && mod == 0 {
        disp = sext(try fetch32(), 4)
        ripRel = mode64
      } else {
        base = rmf | (Int(rex & 1) << 3)
        if base == 5 { s = SS }
      }
      if mod == 1 {
        disp &+= sext(UInt64(try fetch8()), 1)
      } else if mod == 2 {
        disp &+= sext(try fetch32(), 4)
      }
    }
    e.pointee.operandFlags = ripRel ? 2 : 0
    e.pointee.rm = UInt8(base)
    e.pointee.index = UInt8(index)
    e.pointee.scale = UInt8(scale)
    e.pointee.disp = disp
    e.pointee.seg = UInt8(segOvr >= 0 ? segOvr : s)
    e.pointee.asize = UInt8(adSize)
  }

  /// Decodes the rest of one of the decoded forms (prefixes read, opcode `b`) into `e`
  /// (all but `len` and the cache fields). False: not one of them; bytes may have been
  /// consumed, and `execute()` runs the instruction.
  func decodeForm(_ b: UInt8, _ e: UnsafeMutablePointer<DecodedInsn>) throws(Fault) -> Bool {
    let os = opSize
    var size = os
    let kind: UInt8
    e.pointee.rex = rex
    switch b {
    case 0x00...0x3F where b & 7 < 6 && b & 0xE7 != 0x26 && b != 0x0F:
      let form = b & 7
      e.pointee.op = b >> 3
      size = form & 1 == 0 ? 1 : os
      switch form {
      case 0, 1:
        try decodeOperand(e)
        kind = DC.aluEG
      case 2, 3:
        try decodeOperand(e)
        kind = DC.aluGE
      default:
        e.pointee.imm = try imm(size) & sizeMask(size)
        kind = DC.aluAI
      }
    case 0x50...0x57:
      e.pointee.reg = (b & 7) | ((rex & 1) << 3)
      size = stackOpSize
      kind = DC.pushR
    case 0x58...0x5F:
      e.pointee.reg = (b & 7) | ((rex & 1) << 3)
      size = stackOpSize
      kind = DC.popR
    case 0x63 where mode64:
      try decodeOperand(e)
      kind = DC.movsxd
    case 0x70...0x7F:
      e.pointee.op = b & 0xF
      e.pointee.disp = sext(UInt64(try fetch8()), 1)
      kind = DC.jcc
    case 0x80, 0x81, 0x83,
      0x82 where !mode64:  // 0x82: an alias of 0x80 outside 64-bit mode
      try decodeOperand(e)
      size = b & 1 == 0 ? 1 : os
      let v = b == 0x81 ? sext(try imm(size), size == 8 ? 4 : size) : sext(try imm(1), 1)
      e.pointee.imm = v & sizeMask(size)
      e.pointee.op = e.pointee.reg & 7
      kind = DC.aluEI
    case 0x84, 0x85:
      try decodeOperand(e)
      size = b == 0x84 ? 1 : os
      kind = DC.test
    case 0x88, 0x89:
      try decodeOperand(e)
      size = b == 0x88 ? 1 : os
      kind = DC.movEG
    case 0x8A, 0x8B:
      try decodeOperand(e)
      size = b == 0x8A ? 1 : os
      kind = DC.movGE
    case 0x8D:
      try decodeOperand(e)
      if e.pointee.isReg { return false }  // #UD
      kind = DC.lea
    case 0x90:
      if rex & 1 != 0 || rep == 0xF3 { return false }  // XCHG R8, PAUSE
      kind = DC.nop
    case 0xB0...0xB7:
      e.pointee.reg = (b & 7) | ((rex & 1) << 3)
      size = 1
      e.pointee.imm = UInt64(try fetch8())
      kind = DC.movRI
    case 0xB8...0xBF:
      e.pointee.reg = (b & 7) | ((rex & 1) << 3)
      e.pointee.imm = os == 8 ? try fetch64() : try imm(os)
      kind = DC.movRI
    case 0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3:
      try decodeOperand(e)
      size = b & 1 == 0 ? 1 : os
      e.pointee.op = e.pointee.reg & 7
      if b <= 0xC1 {
        e.pointee.imm = UInt64(try fetch8())
      } else {
        e.pointee.imm = b <= 0xD1 ? 1 : 0x100  // 0x100: count from CL
      }
      kind = DC.shift
    case 0xC2, 0xC3:
      e.pointee.imm = b == 0xC2 ? try fetch16() : 0
      size = stackOpSize
      kind = DC.ret
    case 0xC6, 0xC7:
      try decodeOperand(e)
      if e.pointee.reg & 7 != 0 { return false }  // #UD
      size = b == 0xC6 ? 1 : os
      e.pointee.imm = try imm(size)
      kind = DC.movEI
    case 0xC9:
      size = stackOpSize
      kind = DC.leave
    case 0xE8, 0xE9:
      e.pointee.disp = mode64 || os == 4 ? sext(try fetch32(), 4) : try fetch16()
      size = stackOpSize
      kind = b == 0xE8 ? DC.call : DC.jmp
    case 0xEB:
      e.pointee.disp = sext(UInt64(try fetch8()), 1)
      kind = DC.jmp
    case 0xF6, 0xF7:
      try decodeOperand(e)
      size = b == 0xF6 ? 1 : os
      switch e.pointee.reg & 7 {
      case 0, 1:
        e.pointee.imm = try imm(size) & sizeMask(size)
        kind = DC.testI
      case 2: kind = DC.not
      case 3: kind = DC.neg
      default:
        e.pointee.op = e.pointee.reg & 7
        kind = DC.mulDiv
      }
    case 0x98: kind = DC.cbw
    case 0x99: kind = DC.cwd
    case 0xA8, 0xA9:
      // TEST AL/eAX, imm: TEST r/m, imm with the accumulator as the register operand.
      size = b == 0xA8 ? 1 : os
      e.pointee.imm = try imm(size) & sizeMask(size)
      e.pointee.operandFlags = 1
      e.pointee.rm = 0
      kind = DC.testI
    case 0xFE:
      try decodeOperand(e)
      if e.pointee.reg & 7 > 1 { return false }  // #UD
      size = 1
      e.pointee.op = e.pointee.reg & 7
      kind = DC.incdec
    case 0xFF:
      try decodeOperand(e)
      switch e.pointee.reg & 7 {
      case 0, 1:
        e.pointee.op = e.pointee.reg & 7
        kind = DC.incdec
      case 2:
        size = mode64 ? 8 : os
        kind = DC.callInd
      case 4:
        size = mode64 ? 8 : os
        kind = DC.jmpInd
      case 6:
        size = stackOpSize
        kind = DC.pushE
      default:
        return false  // far CALL/JMP, #UD
      }
    case 0x0F:
      let b2 = try fetch8()
      switch b2 {
      case 0x80...0x8F:
        e.pointee.op = b2 & 0xF
        e.pointee.disp = mode64 || os == 4 ? sext(try fetch32(), 4) : try fetch16()
        kind = DC.jcc
      case 0x40...0x4F:
        try decodeOperand(e)
        e.pointee.op = b2 & 0xF
        kind = DC.cmov
      case 0x90...0x9F:
        try decodeOperand(e)
        e.pointee.op = b2 & 0xF
        size = 1
        kind = DC.setcc
      case 0x1F:
        try decodeOperand(e)
        if e.pointee.reg & 7 != 0 { return false }
        kind = DC.nop  // 0F 1F /0: the multi-byte NOP compilers pad loop heads with
      case 0xAF:
        try decodeOperand(e)
        kind = DC.imul
      case 0xB0, 0xB1, 0xC0, 0xC1:
        try decodeOperand(e)
        size = b2 & 1 == 0 ? 1 : os
        kind = b2 < 0xC0 ? DC.cmpxchg : DC.xadd
      case 0xB6, 0xB7:
        try decodeOperand(e)
        e.pointee.op = b2 == 0xB6 ? 1 : 2
        kind = DC.movzx
      case 0xBE, 0xBF:
        try decodeOperand(e)
        e.pointee.op = b2 == 0xBE ? 1 : 2
        kind = DC.movsx
      default:
        return false
      }
    default:
      return false
    }
    e.pointee.size = UInt8(size)
    e.pointee.kind = kind
    return true
  }
}
