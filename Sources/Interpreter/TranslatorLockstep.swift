import Glibc
import X86

// Lockstep (a test mode of `--engine translator`): each translated block runs in host
// code, then its effects are undone and the interpreter runs the same number of
// instructions from the same state; registers (XMM too), RIP, status flags and stored
// bytes must agree. The interpreter's result is kept.
//
// Stores are seen by snapshotting every page the write TLB maps before the block: a
// translated block can store only through a write-TLB hit, so it cannot write elsewhere.
// A store the interpreter makes outside those pages (which the block would have left to
// the interpreter) is not seen.

/// Lockstep bookkeeping, owned by a BlockTranslator.
final class Lockstep {
  var blocks: UInt64 = 0
  var mismatches: UInt64 = 0
  /// The first difference, described.
  var firstReport: String?
  /// Per block slot: the status flags left undefined after 0...count instructions (the
  /// host CPU and the interpreter may differ there, as the SDM allows).
  var undefinedAt: [Int: [UInt64]] = [:]

  var statistics: [String: UInt64] {
    ["translator.lockstep_blocks": blocks, "translator.lockstep_mismatches": mismatches]
  }
}

extension BlockCompiler {
  /// Status flags an instruction leaves undefined (for the forms `translatable` accepts).
  static func undefinedBy(_ d: DecodedInsn) -> UInt64 {
    switch d.kind {
    case DC.aluEG, DC.aluGE, DC.aluAI, DC.aluEI:
      let op = d.op & 7
      return op == 1 || op == 4 || op == 6 ? RFLAGS.af : 0  // OR, AND, XOR
    case DC.test, DC.testI: return RFLAGS.af
    case DC.shift: return RFLAGS.of | RFLAGS.af  // OF for counts above 1; AF for shifts
    case DC.imul: return RFLAGS.sf | RFLAGS.zf | RFLAGS.af | RFLAGS.pf
    default: return 0
    }
  }

  /// The status flags undefined after each prefix of the block (index i: after i
  /// instructions), carried once around the block for blocks that loop.
  static func undefinedFlags(_ insns: [DecodedInsn]) -> [UInt64] {
    var at = [UInt64](repeating: 0, count: insns.count + 1)
    var u: UInt64 = 0
    for _ in 0..<2 {
      at[0] |= u
      for (i, d) in insns.enumerated() {
        if writesAllFlags(d) {
          u = undefinedBy(d)
        } else if d.kind == DC.incdec {
          u &= RFLAGS.cf
        } else {
          u |= undefinedBy(d)
        }
        at[i + 1] |= u
      }
    }
    return at
  }
}

extension InterpreterCPU {
  /// The first lockstep difference, or nil (lockstep off or no difference).
  public var lockstepReport: String? { translator?.lockstep?.firstReport }

  /// Runs block `fn` (slot `slot`, `count` instructions) in lockstep with the interpreter
  /// (see the top of this file). Leaves the context words and returns the next RIP as the
  /// block would, with the interpreter's state in the CPU.
  func runLockstep(
    _ t: BlockTranslator, _ fn: BlockFunction, _ slot: Int, count: UInt64, _ budget: UInt64
  ) -> UInt64 {
    let ls = t.lockstep!
    ls.blocks &+= 1
    let regs0 = Array(UnsafeBufferPointer(start: r, count: 16))
    let xmm0 = Array(UnsafeRawBufferPointer(start: xmm, count: 256))
    let rip0 = rip
    let flags0 = t.context[0]
    // Every page the write TLB maps, once: (guest linear page, host page).
    var pages: [(UInt64, UnsafeMutableRawPointer)] = []
    var seen = Set<UInt>()
    for i in 0..<TLB.size where tlb.wtag[i] != TLB.invalid {
      let lin = tlb.wtag[i] & ~0xFFF
      let host = UInt(bitPattern: tlb.wadd[i] &+ Int(bitPattern: UInt(lin)))
      if seen.insert(host).inserted {
        pages.append((lin, UnsafeMutableRawPointer(bitPattern: host)!))
      }
    }
    let before = UnsafeMutableRawPointer.allocate(
      byteCount: max(1, pages.count) << 12, alignment: 8)
    let after = UnsafeMutableRawPointer.allocate(byteCount: max(1, pages.count) << 12, alignment: 8)
    defer {
      before.deallocate()
      after.deallocate()
    }
    for (k, p) in pages.enumerated() { (before + k << 12).copyMemory(from: p.1, byteCount: 4096) }

    let nextT = fn(r, t.context)
    let flagsT = t.context[0]
    let systemT = t.context[3]  // IF and the other non-status bits (BlockCompilerSystem.swift)
    let regsT = Array(UnsafeBufferPointer(start: r, count: 16))
    let xmmT = Array(UnsafeRawBufferPointer(start: xmm, count: 256))
    let n = t.context[1] <= budget ? budget &- t.context[1] : budget
    for (k, p) in pages.enumerated() {
      (after + k << 12).copyMemory(from: p.1, byteCount: 4096)
      p.1.copyMemory(from: before + k << 12, byteCount: 4096)
    }

    for i in 0..<16 { r[i] = regs0[i] }
    xmm0.withUnsafeBytes { xmm.copyMemory(from: $0.baseAddress!, byteCount: 256) }
    rip = rip0
    fOp = .none
    rfl = (rfl & ~RFLAGS.status) | (flags0 & RFLAGS.status)
    var problems: [String] = []
    for k in 0..<n {
      do {
        try step()
      } catch {
        problems.append("the interpreter faulted (vector \(error.vector)) at instruction \(k)")
        handleFault(error)
        break
      }
    }
    materialize()

    if problems.isEmpty {
      func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
      for i in 0..<16 where r[i] != regsT[i] {
        problems.append("r\(i): translator \(hex(regsT[i])) interpreter \(hex(r[i]))")
      }
      let xmmI = Array(UnsafeRawBufferPointer(start: xmm, count: 256))
      for i in 0..<16 where xmmI[i * 16..<i * 16 + 16] != xmmT[i * 16..<i * 16 + 16] {
        problems.append("xmm\(i) differs")
      }
      if rip != nextT { problems.append("rip: translator \(hex(nextT)) interpreter \(hex(rip))") }
      let at = ls.undefinedAt[slot] ?? []
      let undefined = at.isEmpty ? 0 : at[n % count == 0 && n != 0 ? Int(count) : Int(n % count)]
      let mask = RFLAGS.status & ~undefined
      if (flagsT ^ rfl) & mask != 0 {
        problems.append(
          "flags: translator \(hex(flagsT & mask)) interpreter \(hex(rfl & mask)) (compared \(hex(mask)))"
        )
      }
      if (systemT ^ rfl) & ~RFLAGS.status != 0 {
        problems.append(
          "system flags: translator \(hex(systemT & ~RFLAGS.status)) interpreter \(hex(rfl & ~RFLAGS.status))"
        )
      }
      for (k, p) in pages.enumerated() where memcmp(p.1, after + k << 12, 4096) != 0 {
        for q in 0..<512 {
          let a = (after + k << 12).load(fromByteOffset: q * 8, as: UInt64.self)
          let b = p.1.load(fromByteOffset: q * 8, as: UInt64.self)
          if a != b {
            problems.append(
              "store at \(hex(p.0 + UInt64(q * 8))): translator \(hex(a)) interpreter \(hex(b))")
            break
          }
        }
      }
    }
    if !problems.isEmpty {
      ls.mismatches &+= 1
      if ls.firstReport == nil {
        ls.firstReport =
          "lockstep: block at rip 0x\(String(rip0, radix: 16)) (\(count) instructions, \(n) retired): "
          + problems.joined(separator: "; ") + "; code " + blockBytes(t.entries[slot])
        fputs(ls.firstReport! + "\n", stderr)
      }
    }
    t.context[0] = rfl & RFLAGS.status | RFLAGS.fixed
    // The interpreter's own `stop` and interrupt shadow stand; the block's request does not.
    t.context[3] = rfl & ~RFLAGS.status
    t.context[4] = 0
    return rip
  }

  /// A block's guest bytes in hex (for a lockstep report).
  func blockBytes(_ e: BlockEntry) -> String {
    guard let p = e.bytes else { return "?" }
    return (0..<Int(e.length)).map {
      let b = p.load(fromByteOffset: $0, as: UInt8.self)
      return (b < 16 ? "0" : "") + String(b, radix: 16)
    }.joined(separator: " ")
  }
}
