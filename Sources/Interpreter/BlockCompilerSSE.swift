import Translator
import X86

// SSE/SSE2 moves, logic and packed-integer forms, PUSH imm and PAUSE in translated blocks
// (64-bit mode). glibc's string and memory functions (strlen, memchr, memcpy, memset:
// PXOR, MOVDQU, PCMPEQB, PMOVMSKB, MOVAPS, PSHUFD, ...) and the kernel's interrupt entry
// stubs (PUSH imm8) each split their blocks when interpreted.
//
// - The host runs the guest's own instruction: the guest's XMM registers (the
//   interpreter's `xmm` array) are loaded into host XMM0/XMM1, the instruction runs with
//   the guest's prefix, opcode and immediate on them (or on the guest memory operand
//   after its TLB check), and the result is stored back. Only forms whose result depends
//   on nothing but their operands are taken: no floating-point arithmetic (the host's
//   MXCSR is not the guest's), nothing that writes EFLAGS.
// - A misaligned operand of a form that requires 16-byte alignment leaves the block
//   before the instruction, and the interpreter raises #GP as the CPU does.
// - SSE is usable (CR0.EM and CR0.TS clear, CR4.OSFXSR set) is part of the block key
//   (`sseKeyBit`), so a block holding these forms never runs where they would fault.
// - PAUSE is a NOP unless it yields to another vCPU (`yieldOnPause`), then interpreted.

extension DC {
  /// Translator-only kinds (never in the decode cache, which leaves these to `execute()`).
  /// An SSE instruction: `op` the opcode after 0F, `imm` its imm8 | mandatory prefix << 8.
  static let sse: UInt8 = 0xE0
  /// PUSH imm8/imm32 (6A/68), sign-extended to 64 bits: `imm`.
  static let pushI: UInt8 = 0xE1
}

/// How an SSE form's operands map onto host registers (see `BlockCompiler.sseForm`).
enum SSEShape {
  /// xmm(reg) = f(xmm(reg), xmm/m): logic, packed integer, shuffles, loads.
  case xmmOp
  /// xmm/m = f(xmm/m, xmm(reg)): stores (a register destination merges as the host does).
  case store
  /// MOVD/MOVQ xmm, r/m32/64.
  case toXMM
  /// MOVD/MOVQ r/m32/64, xmm.
  case fromXMM
  /// r32 = f(xmm): PMOVMSKB, PEXTRW (register operand only).
  case toGPR
  /// PSRLW/PSRAW/PSLLW ... PSRLDQ/PSLLDQ xmm, imm8 (the /digit picks the shift).
  case shiftImm
}

struct SSEForm {
  var shape: SSEShape
  /// Bytes a memory operand covers (MOVD/MOVQ: 8 with REX.W, else 4).
  var size: Int = 16
  /// A memory operand must be 16-byte aligned (#GP otherwise).
  var aligned = false
  var imm = false
  var registerOnly = false
  var memoryOnly = false
}

extension BlockCompiler {
  /// The block key's bit for "SSE is usable" (CR0.EM, CR0.TS clear; CR4.OSFXSR set).
  static let sseKeyBit: UInt = 0x80

  /// The SSE forms blocks compile, by mandatory prefix (0: none) and opcode after 0F.
  static func sseForm(_ prefix: UInt8, _ op: UInt8) -> SSEForm? {
    switch (prefix, op) {
    // Packed integer and logic, xmm, xmm/m128 (aligned).
    case (0x66, 0x60...0x6D), (0x66, 0x74...0x76), (0x66, 0xD1...0xD5), (0x66, 0xD8...0xDF),
      (0x66, 0xE0...0xE5), (0x66, 0xE8...0xEF), (0x66, 0xF1...0xF6), (0x66, 0xF8...0xFE),
      (0, 0x54...0x57), (0x66, 0x54...0x57), (0, 0x14...0x15), (0x66, 0x14...0x15):
      return SSEForm(shape: .xmmOp, aligned: true)
    case (0, 0xC6), (0x66, 0xC6), (0x66, 0x70), (0xF3, 0x70), (0xF2, 0x70):
      return SSEForm(shape: .xmmOp, aligned: true, imm: true)
    // Loads: MOVUPS/MOVUPD, MOVAPS/MOVAPD, MOVDQA, MOVDQU, MOVSS, MOVSD, MOVQ.
    case (0, 0x10), (0x66, 0x10), (0xF3, 0x6F): return SSEForm(shape: .xmmOp)
    case (0, 0x28), (0x66, 0x28), (0x66, 0x6F): return SSEForm(shape: .xmmOp, aligned: true)
    case (0xF3, 0x10): return SSEForm(shape: .xmmOp, size: 4)
    case (0xF2, 0x10), (0xF3, 0x7E): return SSEForm(shape: .xmmOp, size: 8)
    // MOVLPS/MOVHPS (register forms: MOVHLPS/MOVLHPS), MOVLPD/MOVHPD (memory only).
    case (0, 0x12), (0, 0x16): return SSEForm(shape: .xmmOp, size: 8)
    case (0x66, 0x12), (0x66, 0x16): return SSEForm(shape: .xmmOp, size: 8, memoryOnly: true)
    // Stores.
    case (0, 0x11), (0x66, 0x11), (0xF3, 0x7F): return SSEForm(shape: .store)
    case (0, 0x29), (0x66, 0x29), (0x66, 0x7F): return SSEForm(shape: .store, aligned: true)
    case (0xF3, 0x11): return SSEForm(shape: .store, size: 4)
    case (0xF2, 0x11), (0x66, 0xD6): return SSEForm(shape: .store, size: 8)
    case (0, 0x13), (0, 0x17), (0x66, 0x13), (0x66, 0x17):
      return SSEForm(shape: .store, size: 8, memoryOnly: true)
    case (0, 0x2B), (0x66, 0x2B), (0x66, 0xE7):  // MOVNTPS/PD, MOVNTDQ
      return SSEForm(shape: .store, aligned: true, memoryOnly: true)
    case (0x66, 0x6E): return SSEForm(shape: .toXMM)
    case (0x66, 0x7E): return SSEForm(shape: .fromXMM)
    case (0x66, 0xD7): return SSEForm(shape: .toGPR, registerOnly: true)
    case (0x66, 0xC5): return SSEForm(shape: .toGPR, imm: true, registerOnly: true)
    case (0x66, 0x71...0x73): return SSEForm(shape: .shiftImm, imm: true, registerOnly: true)
    default: return nil
    }
  }

  /// The shift-by-immediate groups' defined /digits (the rest are #UD).
  static func shiftDigitDefined(_ op: UInt8, _ digit: UInt8) -> Bool {
    switch op {
    case 0x71, 0x72: return digit == 2 || digit == 4 || digit == 6
    default: return digit == 2 || digit == 3 || digit == 6 || digit == 7
    }
  }

  static func sseForm(_ d: DecodedInsn) -> SSEForm {
    sseForm(UInt8(truncatingIfNeeded: d.imm >> 8), d.op)!
  }

  /// Bytes the memory operand of `d` covers.
  static func sseAccessSize(_ d: DecodedInsn, _ f: SSEForm) -> Int {
    f.shape == .toXMM || f.shape == .fromXMM ? (d.rex & 8 != 0 ? 8 : 4) : f.size
  }

  func translatableSSE(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.sse: return mode64 && keyMode >> 56 & Self.sseKeyBit != 0
    case DC.pushI: return mode64
    default: return false
    }
  }

  /// One SSE instruction on host XMM0/XMM1 (see the file header); `mem`: its memory
  /// operand, after the TLB check. Uses RCX, R10; the flags are untouched.
  func emitSSE(_ e: inout X86Encoder, _ d: DecodedInsn, mem: HostMem?) {
    let f = Self.sseForm(d)
    let prefix = UInt8(truncatingIfNeeded: d.imm >> 8)
    let p: UInt8? = prefix == 0 ? nil : prefix
    let imm: UInt8? = f.imm ? UInt8(truncatingIfNeeded: d.imm) : nil
    let w = d.rex & 8 != 0
    e.movImm(.rcx, UInt64(UInt(bitPattern: xmm)))
    func guest(_ n: UInt8) -> HostMem { HostMem(.rcx, Int32(n) * 16) }
    let r10 = HostReg.r10.rawValue
    switch f.shape {
    case .xmmOp:
      e.movdqu(xmm: 0, guest(d.reg))
      if let mem {
        e.sse(p, d.op, reg: 0, mem: mem, imm: imm)
      } else {
        e.movdqu(xmm: 1, guest(d.rm))
        e.sse(p, d.op, reg: 0, rm: 1, imm: imm)
      }
      e.movdqu(guest(d.reg), xmm: 0)
    case .store:
      e.movdqu(xmm: 0, guest(d.reg))
      if let mem {
        e.sse(p, d.op, reg: 0, mem: mem)
      } else {
        e.movdqu(xmm: 1, guest(d.rm))
        e.sse(p, d.op, reg: 0, rm: 1)
        e.movdqu(guest(d.rm), xmm: 1)
      }
    case .toXMM:
      // A register source is its slot in the guest GPR array (little-endian: the low bytes).
      e.sse(0x66, 0x6E, reg: 0, mem: mem ?? reg(d.rm), w: w)
      e.movdqu(guest(d.reg), xmm: 0)
    case .fromXMM:
      e.movdqu(xmm: 0, guest(d.reg))
      if let mem {
        e.sse(0x66, 0x7E, reg: 0, mem: mem, w: w)
      } else {
        e.sse(0x66, 0x7E, reg: 0, rm: r10, w: w)  // MOVD zero-extends into R10
        e.store(reg(d.rm), .r10)
      }
    case .toGPR:
      e.movdqu(xmm: 1, guest(d.rm))
      e.sse(0x66, d.op, reg: r10, rm: 1, imm: imm)  // the result zero-extended
      e.store(reg(d.reg), .r10)
    case .shiftImm:
      e.movdqu(xmm: 0, guest(d.rm))
      e.sse(0x66, d.op, reg: d.reg & 7, rm: 0, imm: imm)
      e.movdqu(guest(d.rm), xmm: 0)
    }
  }
}

extension InterpreterCPU {
  /// SSE is usable: the block key's `sseKeyBit`.
  var sseUsable: Bool { cr0 & (CR0.em | CR0.ts) == 0 && cr4 & CR4.osfxsr != 0 }

  /// Fills in a translator-only kind (this file's forms, and BSF/BSR) for an instruction
  /// the decode cache left undecoded (`kind == DC.none`), in 64-bit code.
  func decodeSSE(_ p: UnsafeRawPointer, _ d: inout DecodedInsn, mode: UInt8) {
    guard d.kind == DC.none, mode & 0x10 != 0 else { return }
    fetchPtr = UnsafeMutableRawPointer(mutating: p)
    fetchAvail = 15
    ipos = 0
    var e = DecodedInsn()
    do {
      let b = try decodeStart()
      if lockPrefix || adSize != codeSize || (rep != 0 && has66) { return }
      switch b {
      case 0x90 where rep == 0xF3 && rex & 1 == 0 && !has66:  // PAUSE
        if yieldOnPause { return }
        e.kind = DC.nop
        e.isReg = true
      case 0x6A, 0x68:
        if rep != 0 || has66 { return }  // PUSH imm16
        e.imm = b == 0x6A ? sext(UInt64(try fetch8()), 1) : sext(try fetch32(), 4)
        e.kind = DC.pushI
        e.isReg = true
      case 0x0F:
        let op = try fetch8()
        if op == 0xBC || op == 0xBD {
          // BSF/BSR (not TZCNT/LZCNT): BlockCompilerArith.swift.
          if rep != 0 || opSize == 2 { return }
          try withUnsafeMutablePointer(to: &e) { ep throws(Fault) in try decodeOperand(ep) }
          e.kind = DC.bitScan
          e.op = op == 0xBD ? 1 : 0
          e.rex = rex
          e.size = UInt8(opSize)
          e.len = UInt8(ipos)
          d = e
          return
        }
        let prefix: UInt8 = rep != 0 ? rep : has66 ? 0x66 : 0
        guard let f = BlockCompiler.sseForm(prefix, op) else { return }
        try withUnsafeMutablePointer(to: &e) { ep throws(Fault) in try decodeOperand(ep) }
        if f.registerOnly && !e.isReg || f.memoryOnly && e.isReg { return }
        if f.shape == .shiftImm && !BlockCompiler.shiftDigitDefined(op, e.reg & 7) { return }
        let imm: UInt64 = f.imm ? UInt64(try fetch8()) : 0
        e.kind = DC.sse
        e.op = op
        e.imm = imm | UInt64(prefix) << 8
      default:
        return
      }
    } catch {
      return
    }
    e.rex = rex
    e.size = 8
    e.len = UInt8(ipos)
    d = e
  }
}
