import Glibc
import Translator
import X86

// The translator engine's first stage: runs of register-only integer instructions are
// compiled to host code and run in place of the interpreter; everything else (memory
// operands, stack, 8/16-bit operands, system instructions) is interpreted as before.
//
// - Decoding is the decode cache's (`dcDecode`): one decoder for both engines.
// - Blocks are keyed by the host address of their first byte (the guest-physical
//   location) plus the code size and RIP, so CR3 switches invalidate nothing. A block
//   lies in one page, ends at a Jcc/JMP, an untranslated instruction or 64 instructions.
// - Self- and cross-modifying code: a block keeps a copy of its guest bytes and is
//   re-checked on every entry (as the decode cache re-checks an instruction), so stores,
//   DMA and aliases need no invalidation hook; a changed block is translated again.
// - Nothing in a block can fault, so faults stay precise; a block runs only when its
//   instructions fit the batch budget, so interrupts and `--deterministic` stops fall
//   on the same instruction counts as the interpreter's.
// - Guest status flags live in the host's EFLAGS inside a block (popfq at entry,
//   pushfq at exit); guest GPRs stay in `r`, addressed from host RDI.

/// Generated block entry: (guest GPRs, context) -> next RIP. Context word 0 holds the
/// status flags in and out; word 1 the instructions the block may still retire.
typealias BlockFunction =
  @convention(c) (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UInt64>) -> UInt64

/// One translated (or untranslatable: `fn == nil`) block.
struct BlockEntry {
  var key: UInt = 0
  var rip: UInt64 = 0
  var fn: BlockFunction?
  var count: UInt64 = 0
  var length: Int = 0
  /// Copy of the guest bytes the block was made from (malloc'd; nil when empty).
  var bytes: UnsafeMutableRawPointer?
}

/// Translated blocks and their code memory, owned by one InterpreterCPU.
final class BlockTranslator {
  static let bits = 12
  static let slots = 1 << bits
  static let codeBytes = 8 << 20
  static let maxInstructions = 64

  let entries: UnsafeMutablePointer<BlockEntry>
  let code: CodeMemory
  let context: UnsafeMutablePointer<UInt64>

  var blocksRun: UInt64 = 0
  var blockInstructions: UInt64 = 0
  var translations: UInt64 = 0
  var retranslations: UInt64 = 0

  init() throws {
    code = try CodeMemory(capacity: BlockTranslator.codeBytes)
    entries = .allocate(capacity: BlockTranslator.slots)
    entries.initialize(repeating: BlockEntry(), count: BlockTranslator.slots)
    context = .allocate(capacity: 2)
    context.initialize(repeating: 0, count: 2)
  }

  deinit {
    for i in 0..<BlockTranslator.slots { free(entries[i].bytes) }
    entries.deallocate()
    context.deallocate()
  }

  @inline(__always) static func slot(_ host: UInt) -> Int {
    Int(truncatingIfNeeded: (host ^ (host >> 12)) & UInt(slots - 1))
  }

  /// Drops every block (the code memory is full).
  func flush() {
    for i in 0..<BlockTranslator.slots {
      free(entries[i].bytes)
      entries[i] = BlockEntry()
    }
    code.reset()
  }

  var statistics: [String: UInt64] {
    [
      "translator.blocks_run": blocksRun, "translator.block_instructions": blockInstructions,
      "translator.translations": translations, "translator.retranslations": retranslations,
      "translator.code_flushes": code.resets, "translator.code_bytes": UInt64(code.used),
    ]
  }
}

extension InterpreterCPU {
  /// Turns on translation (`--engine translator`).
  public func enableTranslation() throws {
    translator = try BlockTranslator()
  }

  /// Runs the translated block at RIP if there is one and it fits `budget`; returns the
  /// instructions it retired (0: nothing ran, interpret the next instruction).
  @inline(never) func runBlock(_ t: BlockTranslator, _ budget: UInt64) -> UInt64 {
    let lin = linear(CS, rip)
    let tslot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    guard tlb.xtag[tslot] == (lin & ~0xFFF) | userKey, lin & 0xFFF <= 4096 - 16 else { return 0 }
    let host = UInt(bitPattern: tlb.xadd[tslot] &+ Int(bitPattern: UInt(lin)))
    let p = UnsafeRawPointer(bitPattern: host).unsafelyUnwrapped
    let key = host | UInt(codeSize | (mode64 ? 0x10 : 0)) &<< 56
    let ep = t.entries + BlockTranslator.slot(host)
    if ep.pointee.key != key || ep.pointee.rip != rip
      || (ep.pointee.length != 0 && memcmp(p, ep.pointee.bytes!, ep.pointee.length) != 0)
    {
      if ep.pointee.key == key && ep.pointee.rip == rip { t.retranslations &+= 1 }
      translateBlock(t, ep, p, key, lin)
    }
    guard let fn = ep.pointee.fn, ep.pointee.count <= budget else { return 0 }
    materialize()
    t.context[0] = rfl & RFLAGS.status | RFLAGS.fixed
    t.context[1] = budget &- ep.pointee.count
    let next = fn(r, t.context)
    rfl = (rfl & ~RFLAGS.status) | (t.context[0] & RFLAGS.status)
    rip = next
    let n = budget &- t.context[1]
    t.blocksRun &+= 1
    t.blockInstructions &+= n
    return n
  }

  /// Decodes and compiles the block at `p` (guest linear `lin`, RIP `rip`) into `ep`.
  func translateBlock(
    _ t: BlockTranslator, _ ep: UnsafeMutablePointer<BlockEntry>, _ p: UnsafeRawPointer,
    _ key: UInt, _ lin: UInt64
  ) {
    free(ep.pointee.bytes)
    ep.pointee = BlockEntry(key: key, rip: rip)
    let mode = UInt8(truncatingIfNeeded: codeSize) | (mode64 ? 0x10 : 0)
    var insns: [DecodedInsn] = []
    var offset = 0
    var d = DecodedInsn()
    while insns.count < BlockTranslator.maxInstructions
      && Int(lin & 0xFFF) + offset <= 4096 - 16
    {
      withUnsafeMutablePointer(to: &d) { dcDecode(p + offset, $0, mode, key) }
      guard BlockCompiler.translatable(d) else { break }
      insns.append(d)
      offset += Int(d.len)
      if d.kind == DC.jcc || d.kind == DC.jmp { break }
    }
    guard !insns.isEmpty else {
      // Remember "interpret this" cheaply, checked against the first 16 bytes.
      ep.pointee.length = 16
      ep.pointee.bytes = malloc(16)
      ep.pointee.bytes!.copyMemory(from: p, byteCount: 16)
      return
    }
    let bytes = BlockCompiler(mode64: mode64, codeMask: codeMask).compile(insns, rip: rip)
    var entry = t.code.install(bytes)
    if entry == nil {
      t.flush()
      entry = t.code.install(bytes)
    }
    guard let entry else { return }
    t.translations &+= 1
    ep.pointee = BlockEntry(
      key: key, rip: rip, fn: unsafeBitCast(entry, to: BlockFunction.self),
      count: UInt64(insns.count), length: offset, bytes: malloc(offset))
    ep.pointee.bytes!.copyMemory(from: p, byteCount: offset)
  }
}

/// Host code for a run of decoded guest instructions (the forms `translatable` accepts).
struct BlockCompiler {
  let mode64: Bool
  let codeMask: UInt64

  static let g = HostReg.rdi  // guest GPRs
  static let ctx = HostReg.rsi  // context words

  /// Register-only forms at 32/64-bit operand size, LEA, NOP, and direct Jcc/JMP.
  static func translatable(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.jcc, DC.jmp, DC.nop: return true
    case DC.lea: return d.size == 4 || d.size == 8
    case DC.aluEG, DC.aluGE, DC.aluEI, DC.test, DC.testI, DC.movEG, DC.movGE, DC.incdec,
      DC.imul:
      return d.isReg && (d.size == 4 || d.size == 8)
    case DC.shift, DC.movEI:
      return d.isReg && (d.size == 4 || d.size == 8)
    case DC.aluAI, DC.movRI:
      return d.size == 4 || d.size == 8
    default:
      return false
    }
  }

  func reg(_ i: UInt8) -> HostMem { HostMem(Self.g, Int32(i) * 8) }

  func compile(_ insns: [DecodedInsn], rip start: UInt64) -> [UInt8] {
    var e = X86Encoder()
    let g = Self.g
    let ctx = Self.ctx
    // Guest status flags into the host's EFLAGS.
    e.load(.rax, HostMem(ctx, 0))
    e.push(.rax)
    e.popfq()
    let top = e.newLabel()
    e.bind(top)
    let count = Int32(insns.count)

    /// Leaves with RIP `next`: the flags go back to the context.
    func exit(_ next: UInt64) {
      e.pushfq()
      e.pop(.rcx)
      e.store(HostMem(ctx, 0), .rcx)
      e.movImm(.rax, next)
      e.ret()
    }
    /// Branches back to this block's start: loops in host code while the budget lasts.
    func loopOrExit(_ target: UInt64) {
      guard target == start else {
        exit(target)
        return
      }
      let out = e.newLabel()
      e.pushfq()
      e.pop(.rcx)
      e.load(.rax, HostMem(ctx, 8))
      e.alu(.sub, .rax, imm: count)
      e.jcc(.b, out)
      e.store(HostMem(ctx, 8), .rax)
      e.push(.rcx)
      e.popfq()
      e.jmp(top)
      e.bind(out)
      e.store(HostMem(ctx, 0), .rcx)
      e.movImm(.rax, start)
      e.ret()
    }

    var pc = start
    for d in insns {
      let s: OpSize = d.size == 8 ? .b64 : .b32
      let next = (pc &+ UInt64(d.len)) & codeMask
      let op = ALUOp(rawValue: d.op & 7)!
      switch d.kind {
      case DC.aluEG, DC.aluGE:
        let (dst, src) = d.kind == DC.aluEG ? (d.rm, d.reg) : (d.reg, d.rm)
        e.load(.rax, reg(dst), s)
        e.load(.rcx, reg(src), s)
        e.alu(op, .rax, .rcx, s)
        if op != .cmp { e.store(reg(dst), .rax) }
      case DC.aluAI, DC.aluEI:
        let dst: UInt8 = d.kind == DC.aluAI ? 0 : d.rm
        e.load(.rax, reg(dst), s)
        e.alu(op, .rax, imm: Int32(truncatingIfNeeded: d.imm), s)
        if op != .cmp { e.store(reg(dst), .rax) }
      case DC.test:
        e.load(.rax, reg(d.rm), s)
        e.load(.rcx, reg(d.reg), s)
        e.test(.rax, .rcx, s)
      case DC.testI:
        e.load(.rax, reg(d.rm), s)
        e.test(.rax, imm: Int32(truncatingIfNeeded: d.imm), s)
      case DC.movEG, DC.movGE:
        let (dst, src) = d.kind == DC.movEG ? (d.rm, d.reg) : (d.reg, d.rm)
        // A 32-bit load zero-extends, and the 64-bit store writes that: as the guest's move.
        e.load(.rax, reg(src), s)
        e.store(reg(dst), .rax)
      case DC.movRI:
        e.movImm(.rax, s == .b64 ? d.imm : d.imm & 0xFFFF_FFFF)
        e.store(reg(d.reg), .rax)
      case DC.movEI:
        e.movImm(.rax, s == .b64 ? d.imm : d.imm & 0xFFFF_FFFF)
        e.store(reg(d.rm), .rax)
      case DC.lea:
        if d.ripRel {
          let v = next &+ d.disp
          e.movImm(.rax, s == .b64 ? v : v & 0xFFFF_FFFF)
        } else {
          if d.rm != 0xFF { e.load(.rax, reg(d.rm)) } else { e.movImm(.rax, 0) }
          let idx: HostReg? = d.index != 0xFF ? .rcx : nil
          if d.index != 0xFF { e.load(.rcx, reg(d.index)) }
          // Outside 64-bit mode addresses are 32 bits: the 32-bit LEA truncates the same way.
          let size: OpSize = s == .b64 && mode64 ? .b64 : .b32
          e.lea(.rax, HostMem(.rax, d.disp32, index: idx, scale: UInt8(1 << d.scale)), size)
        }
        e.store(reg(d.reg), .rax)
      case DC.shift:
        let sop = ShiftOp(rawValue: d.op == 6 ? 4 : d.op)!  // /6 (SAL) acts as SHL
        e.load(.rax, reg(d.rm), s)
        if d.imm == 0x100 {
          e.load(.rcx, reg(1))
          e.shiftCL(sop, .rax, s)
        } else {
          e.shift(sop, .rax, imm: UInt8(truncatingIfNeeded: d.imm), s)
        }
        e.store(reg(d.rm), .rax)
      case DC.incdec:
        e.load(.rax, reg(d.rm), s)
        if d.op == 1 { e.dec(.rax, s) } else { e.inc(.rax, s) }
        e.store(reg(d.rm), .rax)
      case DC.imul:
        e.load(.rax, reg(d.reg), s)
        e.load(.rcx, reg(d.rm), s)
        e.imul(.rax, .rcx, s)
        e.store(reg(d.reg), .rax)
      case DC.jcc:
        let target = branchTarget(next, d)
        let taken = e.newLabel()
        e.jcc(Cond(rawValue: d.op & 0xF)!, taken)
        exit(next)
        e.bind(taken)
        loopOrExit(target)
        return e.bytes
      case DC.jmp:
        loopOrExit(branchTarget(next, d))
        return e.bytes
      default:  // DC.nop
        break
      }
      pc = next
    }
    exit(pc)
    precondition(e.isResolved)
    _ = g
    return e.bytes
  }

  /// A direct branch's target, wrapped as `dcTarget` wraps it.
  func branchTarget(_ next: UInt64, _ d: DecodedInsn) -> UInt64 {
    let t = next &+ d.disp
    if mode64 { return t }
    return d.size == 2 ? t & 0xFFFF : t & 0xFFFF_FFFF
  }
}
