import Translator
import X86

// CLI, STI, PUSHF and POPF in translated blocks, at CPL 0 (PUSHF/POPF in 64-bit mode with
// a 64-bit stack). Linux's spinlocks (spin_lock_irqsave is PUSHF; POP; CLI and its unlock
// PUSH; POPF) and its interrupt paths are full of them; interpreted, each one split the
// block around it.
//
// - IF and the other non-status bits of RFLAGS stay in the interpreter's `rfl`: a block
//   gets them in context word 3 and hands them back there (`blockEntry/ExitSystemFlags`).
// - A block never takes an interrupt. An STI or a POPF ends its block (never chained), and
//   when it set IF, context word 4 tells the batch to stop as the interpreter's `stop`
//   does (1: POPF; 2: STI, whose interrupt shadow then covers the next instruction), so
//   interrupts arrive at the same instruction counts as in the interpreter.
// - The IOPL check is skipped because only CPL 0 code is compiled (the block key keeps
//   CPL 0 apart from CPL 1 and 2); a POPF that sets TF leaves the block before it.

extension DC {
  // Translator-only kinds, never stored in the decode cache (which leaves these
  // one-byte opcodes to `execute()`).
  static let cli: UInt8 = 0xF0
  static let sti: UInt8 = 0xF1
  static let pushf: UInt8 = 0xF2
  static let popf: UInt8 = 0xF3
  /// CLD and STD (DF in context word 3, as IF).
  static let cld: UInt8 = 0xF4
  static let std: UInt8 = 0xF5
  /// BSWAP r32/r64 (0F C8+r): the host's BSWAP on the register (`compile`).
  static let bswap: UInt8 = 0xF6
}

extension BlockCompiler {
  /// The bits POPF at CPL 0 may change besides the status flags (TF leaves the block).
  static let popfSystemMask: UInt64 =
    RFLAGS.tf | RFLAGS.df | RFLAGS.nt | RFLAGS.ac | RFLAGS.id | RFLAGS.if | RFLAGS.iopl

  /// Context word 4 after a block: 0, or why the batch must stop (see the file header).
  static let stopForPOPF: UInt64 = 1
  static let stopForSTI: UInt64 = 2

  /// Fills in a translator-only kind for the instructions the decode cache left undecoded
  /// (`kind == DC.none`) that this file compiles: unprefixed FA, FB, 9C, 9D, FC, FD; the
  /// fences (0F AE E8/F0/F8: NOPs, as one host thread runs every vCPU) and BSWAP (0F C8+r,
  /// REX allowed); in 32- and 64-bit code (16-bit code is never translated).
  static func decodeSystem(_ p: UnsafeRawPointer, _ d: inout DecodedInsn, mode: UInt8) {
    guard d.kind == DC.none, mode & 0x0F != 2 else { return }
    let mode64 = mode & 0x10 != 0
    func byte(_ i: Int) -> UInt8 { p.load(fromByteOffset: i, as: UInt8.self) }
    let kind: UInt8
    var len: UInt8 = 1
    var size: UInt8 = mode64 ? 8 : 4
    var reg: UInt8 = 0
    switch byte(0) {
    case 0xFA: kind = DC.cli
    case 0xFB: kind = DC.sti
    case 0x9C: kind = DC.pushf
    case 0x9D: kind = DC.popf
    case 0xFC: kind = DC.cld
    case 0xFD: kind = DC.std
    case 0x0F where byte(1) == 0xAE && (byte(2) == 0xE8 || byte(2) == 0xF0 || byte(2) == 0xF8):
      kind = DC.nop
      len = 3
    case 0x0F where byte(1) & 0xF8 == 0xC8:
      kind = DC.bswap
      reg = byte(1) & 7
      size = 4
      len = 2
    case 0x40...0x4F where mode64 && byte(1) == 0x0F && byte(2) & 0xF8 == 0xC8:
      kind = DC.bswap
      reg = byte(2) & 7 | (byte(0) & 1) << 3
      size = byte(0) & 8 != 0 ? 8 : 4
      len = 3
    default: return
    }
    d.kind = kind
    d.len = len
    d.size = size
    d.reg = reg
    d.isReg = kind != DC.pushf && kind != DC.popf  // the stack is their only memory operand
  }

  /// Block keys carry CPL 0 apart from CPL 1-2 and 3 (`runBlock`): only CPL 0 may skip the
  /// IOPL check.
  var cpl0: Bool { keyMode >> 56 & 0x60 == 0 }

  func translatableSystem(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.cli, DC.sti: return cpl0
    case DC.pushf, DC.popf: return cpl0 && mode64 && d.size == 8
    case DC.cld, DC.std, DC.bswap: return true
    default: return false
    }
  }

  /// CLI or STI: IF in context word 3; the guest's status flags (in EFLAGS) are kept.
  func emitInterruptFlag(_ e: inout X86Encoder, set: Bool) {
    let word3 = HostMem(Self.ctx, 24)
    e.lahf()
    e.setcc(.o, .rax)
    if set {
      let wasSet = e.newLabel()
      e.load(.rcx, word3)
      e.test(.rcx, imm: Int32(RFLAGS.if))
      e.jcc(.ne, wasSet)
      e.alu(.or, .rcx, imm: Int32(RFLAGS.if))
      e.store(word3, .rcx)
      e.storeImm(HostMem(Self.ctx, 32), Int32(Self.stopForSTI))
      e.bind(wasSet)
    } else {
      e.alu(.and, word3, imm: Int32(truncatingIfNeeded: ~RFLAGS.if))
    }
    e.alu(.add, .rax, imm: 0x7F, .b8)
    e.sahf()
  }

  /// CLD or STD: DF in context word 3; the guest's status flags (in EFLAGS) are kept.
  func emitDirectionFlag(_ e: inout X86Encoder, set: Bool) {
    let word3 = HostMem(Self.ctx, 24)
    e.lahf()
    e.setcc(.o, .rax)
    if set {
      e.alu(.or, word3, imm: Int32(RFLAGS.df))
    } else {
      e.alu(.and, word3, imm: Int32(truncatingIfNeeded: ~RFLAGS.df))
    }
    e.alu(.add, .rax, imm: 0x7F, .b8)
    e.sahf()
  }

  /// R10 = the RFLAGS image PUSHF stores (RF and VM clear); EFLAGS kept. Uses RAX, RCX.
  func emitFlagsImage(_ e: inout X86Encoder) {
    e.pushfq()
    e.pop(.r10)
    e.lahf()
    e.setcc(.o, .rax)
    e.alu(.and, .r10, imm: Int32(RFLAGS.status))
    e.load(.rcx, HostMem(Self.ctx, 24))
    e.alu(.and, .rcx, imm: Int32(truncatingIfNeeded: ~(RFLAGS.rf | RFLAGS.vm)))
    e.alu(.or, .r10, .rcx)
    e.alu(.or, .r10, imm: Int32(RFLAGS.fixed))
    e.alu(.add, .rax, imm: 0x7F, .b8)
    e.sahf()
  }

  /// POPF of the value in R10: a set TF goes to `slow` (the interpreter single-steps);
  /// else the status flags go to EFLAGS and the rest to context word 3, and a rising IF
  /// asks the batch to stop. Uses RCX, RDX; R8 (the stack address) is kept.
  func emitPOPF(_ e: inout X86Encoder, slow: Label) {
    let word3 = HostMem(Self.ctx, 24)
    e.test(.r10, imm: Int32(RFLAGS.tf))
    e.jcc(.ne, slow)
    e.load(.rcx, word3)
    let noRise = e.newLabel()
    e.mov(.rdx, .rcx)
    e.not(.rdx)
    e.alu(.and, .rdx, .r10)
    e.test(.rdx, imm: Int32(RFLAGS.if))
    e.jcc(.e, noRise)
    e.storeImm(HostMem(Self.ctx, 32), Int32(Self.stopForPOPF))
    e.bind(noRise)
    let mask = Self.popfSystemMask
    e.alu(.and, .rcx, imm: Int32(truncatingIfNeeded: ~mask))
    e.mov(.rdx, .r10)
    e.alu(.and, .rdx, imm: Int32(mask))
    e.alu(.or, .rcx, .rdx)
    e.store(word3, .rcx)
    e.alu(.and, .r10, imm: Int32(RFLAGS.status))
    e.alu(.or, .r10, imm: Int32(RFLAGS.fixed))
    e.push(.r10)
    e.popfq()
  }
}

extension InterpreterCPU {
  /// Before a block: the non-status RFLAGS bits it may read or change.
  @inline(__always) func blockEntrySystemFlags(_ t: BlockTranslator) {
    t.context[3] = rfl & ~RFLAGS.status
    t.context[4] = 0
  }

  /// After a block: RFLAGS back from its context words, and the batch stopped where a
  /// set IF lets an interrupt in.
  @inline(__always) func blockExitSystemFlags(_ t: BlockTranslator) {
    rfl = (t.context[3] & ~RFLAGS.status) | (t.context[0] & RFLAGS.status)
    guard t.context[4] != 0 else { return }
    stop = true
    if t.context[4] == BlockCompiler.stopForSTI { interruptShadow = true }
  }
}
