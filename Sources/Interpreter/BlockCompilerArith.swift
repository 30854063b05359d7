import Translator

// CMPXCHG, XADD, CBW/CWD (and their wider forms), MUL/IMUL/DIV/IDIV in translated blocks.
// On the console path Linux's spinlocks (LOCK CMPXCHG), atomics (LOCK XADD) and printk's
// number formatting (DIV) each split the block around them when interpreted.
//
// - LOCK needs no host atomics: one vCPU thread runs every vCPU (ARCHITECTURE "SMP"), so
//   a locked read-modify-write is the plain one.
// - MUL/IMUL's SF, ZF, AF, PF are architecturally undefined; the block sets them as the
//   interpreter's `mulFlags` does (from the low half; AF clear), not as the host leaves them.
// - DIV/IDIV never fault in a block: a divisor of 0 or a quotient that would not fit
//   (for IDIV, conservatively: any dividend that is not the sign extension of its low half,
//   or a divisor of -1) leaves the block before the instruction, and the interpreter
//   raises #DE exactly as it does without the translator. Their flags are unchanged
//   (the interpreter leaves them), so the host's are saved around the host DIV.
// - BSF/BSR of 0 leave the block before the instruction (the destination is the
//   interpreter's to keep); otherwise ZF is cleared and the other flags kept, as the
//   interpreter does (the host leaves them undefined).

extension DC {
  /// BSF (`op` 0) and BSR (`op` 1), 32- and 64-bit; translator-only (decoded in
  /// BlockCompilerSSE.swift's `decodeSSE`).
  static let bitScan: UInt8 = 0xE2
}

extension BlockCompiler {
  func translatableArith(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.cmpxchg, DC.xadd, DC.mulDiv, DC.bitScan: return d.isReg || mode64
    case DC.cbw, DC.cwd: return d.size >= 2
    default: return false
    }
  }

  /// DIV/IDIV read the flags in the sense that their check may leave the block with them
  /// (and they keep them).
  static func arithReadsFlags(_ d: DecodedInsn) -> Bool {
    d.kind == DC.mulDiv && d.op >= 6 || d.kind == DC.bitScan  // BSF/BSR keep all but ZF
  }

  static func arithWritesAllFlags(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.cmpxchg, DC.xadd: return true
    case DC.mulDiv: return d.op < 6
    default: return false
    }
  }

  /// CBW/CWDE/CDQE and CWD/CDQ/CQO through the host's own (no flags).
  func emitSignExtendAccumulator(_ e: inout X86Encoder, _ d: DecodedInsn, _ s: OpSize) {
    e.load(.rax, reg(0))
    if d.kind == DC.cbw {
      e.cdqe(s)
      e.store(reg(0), .rax)  // CBW keeps RAX's upper bytes; CWDE zero-extends
    } else {
      e.cdq(s)
      e.store(reg(2), .rdx, s == .b16 ? .b16 : .b64)  // CDQ zero-extends RDX
    }
  }

  /// F6/F7 /4-/7 with the source operand in R11 and the guest flags in EFLAGS. `slow`
  /// (DIV/IDIV) is a side exit before the instruction, taken with the flags in RAX.
  func emitMulDiv(_ e: inout X86Encoder, _ d: DecodedInsn, _ s: OpSize, slow: Label) {
    let acc = reg(0)
    let high = reg(2)
    let divide = d.op >= 6
    if divide {
      e.lahf()
      e.setcc(.o, .rax)
      e.mov(.r10, .rax)
      if d.op == 6 {
        // The quotient fits (and the divisor is not 0) exactly when high < divisor.
        if s == .b8 { e.loadZX(.rcx, HostMem(Self.g, 1), .b8) } else { e.load(.rcx, high, s) }
        e.alu(.cmp, .rcx, .r11, s)
        e.jcc(.ae, slow)
      } else {
        e.test(.r11, .r11, s)
        e.jcc(.e, slow)
        e.alu(.cmp, .r11, imm: -1, s)
        e.jcc(.e, slow)
        // The dividend must be its low half sign-extended: then |quotient| <= 2^(n-2).
        if s == .b8 {
          e.loadSX(.rcx, acc, .b8, .b16)
          e.alu(.cmp, .rcx, acc, .b16)
        } else {
          e.load(.rcx, acc, s)
          e.shift(.sar, .rcx, imm: UInt8(s.rawValue * 8 - 1), s)
          e.alu(.cmp, .rcx, high, s)
        }
        e.jcc(.ne, slow)
      }
    }
    e.load(.rax, acc)
    if divide && s != .b8 { e.load(.rdx, high) }
    switch d.op {
    case 4: e.mul(.r11, s)
    case 5: e.imul1(.r11, s)
    case 6: e.div(.r11, s)
    default: e.idiv(.r11, s)
    }
    switch s {
    case .b8: e.store(acc, .rax, .b16)  // AH:AL
    case .b16:
      e.store(acc, .rax, .b16)
      e.store(high, .rdx, .b16)
    default:  // 32-bit results are zero-extended in RAX and RDX
      e.store(acc, .rax)
      e.store(high, .rdx)
    }
    if divide {
      e.mov(.rax, .r10)
    } else {
      // CF = OF = the host's (the high half is significant); SF, ZF, PF from the low
      // half and AF clear, as `mulFlags`: AH from TEST, AL = OF for the SAHF idiom.
      e.setcc(.o, .rcx)
      e.test(.rax, .rax, s)
      e.lahf()
      e.alu(.and, .rcx, imm: 1, .b32)
      e.alu(.and, .rax, imm: 0xEF00, .b32)  // AF clear
      e.alu(.or, .rax, .rcx, .b32)
      e.shift(.shl, .rcx, imm: 8, .b32)
      e.alu(.or, .rax, .rcx, .b32)
    }
    e.alu(.add, .rax, imm: 0x7F, .b8)
    e.sahf()
  }

  /// BSF/BSR with the source in R11 and the guest flags in EFLAGS: a zero source goes
  /// to `slow` (flags in RAX); else the index to the destination, ZF clear.
  func emitBitScan(_ e: inout X86Encoder, _ d: DecodedInsn, _ s: OpSize, slow: Label) {
    e.lahf()
    e.setcc(.o, .rax)
    e.test(.r11, .r11, s)
    e.jcc(.e, slow)
    e.bitScan(reverse: d.op == 1, .r10, .r11, s)
    e.store(reg(d.reg), .r10)  // 32-bit: zero-extended, as the interpreter writes it
    e.alu(.and, .rax, imm: ~0x4000)  // ZF (AH bit 6)
    e.alu(.add, .rax, imm: 0x7F, .b8)
    e.sahf()
  }
}
