import Glibc
import Translator
import X86

// The translator engine's first stage: runs of integer instructions (register operands;
// in 64-bit mode also memory operands, PUSH/POP/CALL/RET and indirect JMP/CALL through an
// inline TLB check) are compiled to host code and run in place of the interpreter, with
// a few system, arithmetic and SSE forms (BlockCompilerSystem/Arith/SSE.swift);
// everything else (string, most system, x87, SSE arithmetic, ...) is interpreted.
//
// - Decoding is the decode cache's (`dcDecode`): one decoder for both engines.
// - Blocks are keyed by the host address of their first byte (the guest-physical
//   location) plus the code size, CPL and RIP, so CR3 switches invalidate nothing. A block
//   lies in one page, ends at a Jcc/JMP/CALL/RET, an untranslated instruction or 64
//   instructions.
// - Self- and cross-modifying code: a block keeps a copy of its guest bytes and is
//   re-checked on every entry (as the decode cache re-checks an instruction), so stores,
//   DMA and aliases need no invalidation hook; a changed block is translated again.
// - Nothing in a block can fault: a TLB miss, a page-crossing access or a store into the
//   block's own page leaves the block before that instruction, with the state exact, and
//   the interpreter runs it (faults stay precise). A block runs only when its
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
  /// Copy of the guest bytes the block was made from (malloc'd, at least 8 bytes: see
  /// `sameBytes`; nil when empty).
  var bytes: UnsafeMutableRawPointer?
  /// Where a chained predecessor jumps in (see `BlockCompiler.chainEntry`).
  var chainEntry: UnsafeRawPointer?
  /// Where a chained predecessor on another page jumps in (64-bit mode; it checks the
  /// fetch TLB first), or nil.
  var pageEntry: UnsafeRawPointer?
  /// Instructions and guest bytes (32 bits each: the entry stays within 64 bytes).
  var count: UInt32 = 0
  var length: Int32 = 0
  /// The next entry in the same hash bucket (an index into the pool), or -1.
  var next: Int32 = -1
  /// `fn == nil`: the untranslatable instruction's class (TranslatorStopStats.swift).
  var stop: UInt16 = 0
}

/// Translated blocks and their code memory, owned by one InterpreterCPU.
///
/// The block map is a chained hash table over a fixed pool of entries, sized for a
/// kernel's working set (a Linux boot touches some 60 k blocks), so blocks are not evicted
/// by collisions and translated again. Memory is bounded: when the pool or the code
/// memory is full, every block is dropped at once (a flush, counted).
final class BlockTranslator {
  static let bucketBits = 16
  static let buckets = 1 << bucketBits
  static let defaultCapacity = 1 << 17
  static let codeBytes = 64 << 20
  static let maxInstructions = 64
  static let jumpCacheBits = 12
  static let recentBits = 12

  /// The entry pool: `used` entries in use, allocated in order and freed only by a flush.
  let entries: UnsafeMutablePointer<BlockEntry>
  let capacity: Int
  private(set) var used = 0
  /// Bucket heads (pool indices, -1 empty).
  let heads: UnsafeMutablePointer<Int32>
  let code: CodeMemory
  let context: UnsafeMutablePointer<UInt64>
  /// The jump cache generated code consults at a RET: per hash of the key, four words
  /// (key, RIP, chain entry, unused); key 0 is empty.
  let jumpCache: UnsafeMutablePointer<UInt>
  /// A direct-mapped cache in front of the hash table (per hash of the key: key, RIP,
  /// entry address, unused; key 0 is empty): the table's buckets and entries are spread
  /// over megabytes, and most lookups missed the host's caches there.
  let recent: UnsafeMutablePointer<UInt>

  var blocksRun: UInt64 = 0
  var blockInstructions: UInt64 = 0
  var translations: UInt64 = 0
  var retranslations: UInt64 = 0
  var flushes: UInt64 = 0
  var chains: UInt64 = 0
  /// Why the interpreter ran an instruction instead (where the time goes): no fetch-TLB
  /// entry or too near the page end, an untranslatable instruction, too little budget
  /// left, or a side exit before the block's first instruction.
  var missNoTLB: UInt64 = 0
  var missUntranslatable: UInt64 = 0
  var missBudget: UInt64 = 0
  /// Batches a block too long for their rest ended (`budgetMissEndsBatch`).
  var batchesEndedEarly: UInt64 = 0
  var missFirstExit: UInt64 = 0
  /// `missUntranslatable` by instruction class.
  let stops = StopCounts()
  /// The exit the last block left through, if it can be chained: the address of its jump's
  /// rel32, the RIP it left for, and the linear page and mode it ran in (0: none).
  var chainSite: UInt = 0
  var chainRip: UInt64 = 0
  var chainPage: UInt64 = 0
  var chainMode: UInt = 0
  /// Lockstep (TranslatorLockstep.swift): nil when off.
  var lockstep: Lockstep? {
    didSet { lockstepOn = lockstep != nil }
  }
  /// `lockstep != nil`, read on every block entry without retaining the object.
  private(set) var lockstepOn = false

  /// `capacity`: blocks held before a flush (smaller in tests).
  init(capacity: Int = defaultCapacity) throws {
    self.capacity = capacity
    code = try CodeMemory(capacity: BlockTranslator.codeBytes)
    entries = .allocate(capacity: capacity)
    heads = .allocate(capacity: BlockTranslator.buckets)
    heads.initialize(repeating: -1, count: BlockTranslator.buckets)
    context = .allocate(capacity: 5)  // words 3-4: BlockCompilerSystem.swift
    context.initialize(repeating: 0, count: 5)
    jumpCache = .allocate(capacity: 4 << BlockTranslator.jumpCacheBits)
    jumpCache.initialize(repeating: 0, count: 4 << BlockTranslator.jumpCacheBits)
    recent = .allocate(capacity: 4 << BlockTranslator.recentBits)
    recent.initialize(repeating: 0, count: 4 << BlockTranslator.recentBits)
  }

  deinit {
    for i in 0..<used { free(entries[i].bytes) }
    entries.deinitialize(count: used)
    entries.deallocate()
    heads.deallocate()
    stops.deallocate()
    context.deallocate()
    jumpCache.deallocate()
    recent.deallocate()
  }

  @inline(__always) static func bucket(_ key: UInt) -> Int {
    Int(truncatingIfNeeded: (UInt64(key) &* golden) >> UInt64(64 - bucketBits))
  }

  /// The block for (`key`, `rip`), or nil: first in `recent`, then in the hash table.
  @inline(__always) func find(_ key: UInt, _ rip: UInt64) -> UnsafeMutablePointer<BlockEntry>? {
    let r =
      recent + 4
      * Int(truncatingIfNeeded: (UInt64(key) &* Self.golden) >> UInt64(64 - Self.recentBits))
    if r[0] == key && r[1] == UInt(truncatingIfNeeded: rip) {
      return UnsafeMutablePointer(bitPattern: r[2])
    }
    var i = heads[Self.bucket(key)]
    while i >= 0 {
      let ep = entries + Int(i)
      if ep.pointee.key == key && ep.pointee.rip == rip {
        r[0] = key
        r[1] = UInt(truncatingIfNeeded: rip)
        r[2] = UInt(bitPattern: ep)
        return ep
      }
      i = ep.pointee.next
    }
    return nil
  }

  /// The jump cache slot (its first word) for `key`; generated code hashes the same way.
  @inline(__always) func jumpSlot(_ key: UInt) -> UnsafeMutablePointer<UInt> {
    jumpCache + 4
      * Int(truncatingIfNeeded: (UInt64(key) &* Self.golden) >> UInt64(64 - Self.jumpCacheBits))
  }
  static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

  /// A new empty entry for (`key`, `rip`), flushing everything first if the pool is full.
  func insert(_ key: UInt, _ rip: UInt64) -> UnsafeMutablePointer<BlockEntry> {
    if used == capacity { flush() }
    let b = Self.bucket(key)
    let ep = entries + used
    ep.initialize(to: BlockEntry(key: key, rip: rip, next: heads[b]))
    heads[b] = Int32(used)
    used += 1
    return ep
  }

  /// Drops every block (the pool or the code memory is full).
  func flush() {
    for i in 0..<used { free(entries[i].bytes) }
    entries.deinitialize(count: used)
    used = 0
    heads.update(repeating: -1, count: Self.buckets)
    lockstep?.undefinedAt.removeAll()
    chainSite = 0
    jumpCache.update(repeating: 0, count: 4 << Self.jumpCacheBits)
    recent.update(repeating: 0, count: 4 << Self.recentBits)
    code.reset()
    flushes &+= 1
  }

  var statistics: [String: UInt64] {
    [
      "translator.blocks_run": blocksRun, "translator.block_instructions": blockInstructions,
      "translator.translations": translations, "translator.retranslations": retranslations,
      "translator.code_flushes": flushes, "translator.code_bytes": UInt64(code.used),
      "translator.blocks": UInt64(used), "translator.chains": chains,
      "translator.interpreted_no_tlb": missNoTLB,
      "translator.interpreted_untranslatable": missUntranslatable,
      "translator.interpreted_budget": missBudget,
      "translator.batches_ended_early": batchesEndedEarly,
      "translator.interpreted_side_exit": missFirstExit,
    ].merging(lockstep?.statistics ?? [:]) { a, _ in a }.merging(stops.top) { a, _ in a }
  }
}

extension InterpreterCPU {
  /// Turns on translation (`--engine translator`). `lockstep`: every block also runs in
  /// the interpreter from the same state and the two results are compared (a test mode).
  public func enableTranslation(lockstep: Bool = false) throws {
    let t = try BlockTranslator()
    if lockstep { t.lockstep = Lockstep() }
    translator = t
  }

  /// Runs the translated block at RIP if there is one and it fits `budget`; returns the
  /// instructions it retired (0: nothing ran, interpret the next instruction).
  @inline(never) func runBlock(_ t: BlockTranslator, _ budget: UInt64) -> UInt64 {
    let lin = linear(CS, rip)
    let tslot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    guard tlb.xtag[tslot] == (lin & ~0xFFF) | userKey, lin & 0xFFF <= 4096 - 16 else {
      t.missNoTLB &+= 1
      return 0
    }
    let host = UInt(bitPattern: tlb.xadd[tslot] &+ Int(bitPattern: UInt(lin)))
    let p = UnsafeRawPointer(bitPattern: host).unsafelyUnwrapped
    // CPL is in the key: generated code compares TLB tags with the privilege built in.
    let key =
      host | UInt(codeSize | (mode64 ? 0x10 : 0) | (cpl == 3 ? 0x20 : cpl != 0 ? 0x40 : 0)) &<< 56
      | (sseUsable ? BlockCompiler.sseKeyBit &<< 56 : 0)
    let site = t.chainSite
    let flushes = t.flushes  // a flush while translating drops the code `site` is in
    t.chainSite = 0
    var ep: UnsafeMutablePointer<BlockEntry>
    if let found = t.find(key, rip) {
      ep = found
      if ep.pointee.length != 0 && !sameBytes(p, ep.pointee.bytes!, Int(ep.pointee.length)) {
        t.retranslations &+= 1
        ep = translateBlock(t, ep, p, key, lin)
      }
    } else {
      ep = translateBlock(t, nil, p, key, lin)
    }
    guard let fn = ep.pointee.fn else {
      t.missUntranslatable &+= 1
      t.stops.counts[Int(ep.pointee.stop)] &+= 1
      return 0
    }
    // The block the last one left for: patch that exit to jump here directly from now on.
    // Within one linear page (the entry of the first block checked its translation) through
    // the chain entry, which re-checks the budget and this block's guest bytes; from
    // another page through the page entry, which first checks the fetch TLB. One mode only.
    if site != 0 && t.flushes == flushes && t.chainRip == rip && t.chainMode == key >> 56,
      let target = t.chainPage == lin >> 12 ? ep.pointee.chainEntry : ep.pointee.pageEntry
    {
      let at = UnsafeRawPointer(bitPattern: site).unsafelyUnwrapped
      let rel = UInt32(bitPattern: Int32(truncatingIfNeeded: target - (at + 4)))
      t.code.patch(at: at, (0..<4).map { UInt8(truncatingIfNeeded: rel >> (8 * UInt32($0))) })
      t.chains &+= 1
    }
    if let target = ep.pointee.chainEntry {
      let j = t.jumpSlot(key)
      j[0] = key
      j[1] = UInt(rip)
      j[2] = UInt(bitPattern: target)
    }
    let count = UInt64(ep.pointee.count)
    guard count <= budget else {
      if budgetMissEndsBatch {
        t.batchesEndedEarly &+= 1
        stop = true
      } else {
        t.missBudget &+= 1
      }
      return 0
    }
    materialize()
    t.context[0] = rfl & RFLAGS.status | RFLAGS.fixed
    t.context[1] = budget &- count
    t.context[2] = 0
    blockEntrySystemFlags(t)
    let next =
      !t.lockstepOn
      ? fn(r, t.context) : runLockstep(t, fn, ep - t.entries, count: count, budget)
    blockExitSystemFlags(t)
    rip = next
    if t.context[2] != 0 {
      t.chainSite = UInt(t.context[2])
      t.chainRip = next
      t.chainPage = lin >> 12
      t.chainMode = key >> 56
    }
    // A block never hands back more than it was given; the guard keeps a compiler bug from
    // wrapping the batch count into a runaway loop.
    let n = t.context[1] <= budget ? budget &- t.context[1] : budget
    t.blocksRun &+= 1
    t.blockInstructions &+= n
    if n == 0 { t.missFirstExit &+= 1 }
    return n
  }

  /// Whether the `n` guest bytes at `a` equal the copy at `b` (both at least 8 bytes long;
  /// shorter blocks compare 8), in 8-byte words, the last one overlapping: inline, where a
  /// call to memcmp cost more than the compare.
  @inline(__always) func sameBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    var off = 0
    while off < n - 8 {
      if a.loadUnaligned(fromByteOffset: off, as: UInt64.self)
        != b.loadUnaligned(fromByteOffset: off, as: UInt64.self)
      {
        return false
      }
      off += 8
    }
    let last = max(n - 8, 0)
    return a.loadUnaligned(fromByteOffset: last, as: UInt64.self)
      == b.loadUnaligned(fromByteOffset: last, as: UInt64.self)
  }

  /// Decodes and compiles the block at `p` (guest linear `lin`, RIP `rip`) into `existing`
  /// (its guest bytes changed) or a new entry; returns the entry, which a flush may move.
  func translateBlock(
    _ t: BlockTranslator, _ existing: UnsafeMutablePointer<BlockEntry>?, _ p: UnsafeRawPointer,
    _ key: UInt, _ lin: UInt64
  ) -> UnsafeMutablePointer<BlockEntry> {
    let mode = UInt8(truncatingIfNeeded: codeSize) | (mode64 ? 0x10 : 0)
    var insns: [DecodedInsn] = []
    var offset = 0
    var d = DecodedInsn()
    var compiler = BlockCompiler(
      mode64: mode64, codeMask: codeMask, user: cpl == 3, tlb: tlb, segBase: segBase,
      hostPage: UInt(bitPattern: p) >> 12, guest: p, chain: t.lockstep == nil,
      codeAt: UInt(bitPattern: t.code.nextAddress), keyMode: (key >> 56) << 56,
      jumpCache: t.jumpCache, xmm: xmm)
    while insns.count < BlockTranslator.maxInstructions
      && Int(lin & 0xFFF) + offset <= 4096 - 16
    {
      withUnsafeMutablePointer(to: &d) { dcDecode(p + offset, $0, mode, key) }
      BlockCompiler.decodeSystem(p + offset, &d, mode: mode)
      decodeSSE(p + offset, &d, mode: mode)  // BlockCompilerSSE.swift
      guard compiler.translatable(d) else { break }
      insns.append(d)
      offset += Int(d.len)
      if BlockCompiler.endsBlock(d) { break }
    }
    var block = insns.isEmpty ? nil : compiler.compile(insns, rip: rip, length: offset)
    var ep = existing
    if (block?.bytes.count ?? 0) + 16 > t.code.free || (ep == nil && t.used == t.capacity) {
      t.flush()
      ep = nil
      // The code's own address is built into its chain exits: compile again for the new one.
      compiler.codeAt = UInt(bitPattern: t.code.nextAddress)
      if block != nil { block = compiler.compile(insns, rip: rip, length: offset) }
    }
    let e = ep ?? t.insert(key, rip)
    free(e.pointee.bytes)
    e.pointee = BlockEntry(key: key, rip: rip, next: e.pointee.next)
    guard let block else {
      // Remember "interpret this" cheaply, checked against the first 16 bytes.
      e.pointee.length = 16
      e.pointee.bytes = malloc(16)
      e.pointee.bytes!.copyMemory(from: p, byteCount: 16)
      e.pointee.stop = untranslatableClass(p)
      return e
    }
    guard let entry = t.code.install(block.bytes) else { return e }  // larger than the cache
    t.lockstep?.undefinedAt[e - t.entries] = BlockCompiler.undefinedFlags(insns)
    t.translations &+= 1
    e.pointee.fn = unsafeBitCast(entry, to: BlockFunction.self)
    e.pointee.chainEntry = entry + block.chainEntry
    e.pointee.pageEntry = block.pageEntry.map { entry + $0 }
    e.pointee.count = UInt32(insns.count)
    e.pointee.length = Int32(offset)
    // At least 8 bytes (`sameBytes`); the page holds 16 past the start.
    e.pointee.bytes = malloc(max(offset, 8))
    e.pointee.bytes!.copyMemory(from: p, byteCount: max(offset, 8))
    return e
  }
}

/// Host code for a run of decoded guest instructions (the forms `translatable` accepts).
///
/// Host registers: RDI guest GPRs, RSI context; R10/R11 operand values; R8 a guest linear
/// address, R9 its TLB addend; RAX holds the guest flags (LAHF + SETO) across a TLB check;
/// RCX/RDX scratch. Nothing is callee-saved, so there is no prologue beyond loading flags.
struct BlockCompiler {
  let mode64: Bool
  let codeMask: UInt64
  /// CPL 3: the user bit is part of every TLB tag compared.
  let user: Bool
  let tlb: TLB
  let segBase: UnsafeMutablePointer<UInt64>
  /// The host page holding the block: a store there leaves the block (self-modifying code).
  let hostPage: UInt
  /// The block's guest bytes (their host address), checked by the chain entry.
  let guest: UnsafeRawPointer
  /// Exits to a known RIP may be patched to jump to the next block (off in lockstep).
  let chain: Bool
  /// Where the code will execute (chain exits hand back the address of their jump).
  var codeAt: UInt
  /// The block key's mode bits (top byte) and the jump cache, for RET's inline lookup.
  let keyMode: UInt
  let jumpCache: UnsafeMutablePointer<UInt>
  /// The guest's XMM registers (the interpreter's `xmm`), for SSE forms.
  let xmm: UnsafeMutableRawPointer

  static let g = HostReg.rdi  // guest GPRs
  static let ctx = HostReg.rsi  // context words

  /// Register forms at 32/64-bit operand size, LEA, NOP and direct Jcc/JMP; in 64-bit
  /// mode also their memory forms (and MOVZX loads) through the inline TLB path.
  func translatable(_ d: DecodedInsn) -> Bool {
    let sized = d.size == 4 || d.size == 8
    let operandOK = d.isReg || mode64
    switch d.kind {
    case DC.jcc, DC.jmp, DC.nop: return true
    case DC.pushR, DC.popR, DC.call: return mode64 && d.size == 8
    case DC.ret: return mode64 && d.size == 8 && d.imm == 0
    case DC.jmpInd, DC.callInd: return mode64 && d.size == 8
    case DC.lea: return sized
    case DC.aluEG, DC.aluGE, DC.aluEI, DC.test, DC.testI, DC.movEG, DC.movGE, DC.incdec,
      DC.imul, DC.shift, DC.movEI:
      return operandOK
    case DC.movzx:
      return sized && operandOK
    case DC.movsx, DC.movsxd, DC.cmov, DC.setcc: return operandOK
    case DC.leave: return mode64 && d.size == 8
    case DC.not, DC.neg: return operandOK
    case DC.aluAI, DC.movRI:
      return true
    case DC.cli, DC.sti, DC.pushf, DC.popf, DC.cld, DC.std, DC.bswap:
      return translatableSystem(d)
    case DC.cmpxchg, DC.xadd, DC.cbw, DC.cwd, DC.mulDiv, DC.bitScan:
      return translatableArith(d)  // BlockCompilerArith.swift
    case DC.sse, DC.pushI:
      return translatableSSE(d)  // BlockCompilerSSE.swift
    default:
      return false
    }
  }

  func reg(_ i: UInt8) -> HostMem { HostMem(Self.g, Int32(i) * 8) }

  /// Where guest register `i` of `size` bytes lives: without a REX prefix, byte registers
  /// 4-7 are AH, CH, DH, BH, the second byte of registers 0-3.
  func reg(_ i: UInt8, _ size: OpSize, rex: UInt8) -> HostMem {
    if size == .b8 && rex == 0 && (4...7).contains(i) {
      return HostMem(Self.g, Int32(i - 4) * 8 + 1)
    }
    return reg(i)
  }

  /// Flags: does the instruction read the guest's status flags, or overwrite all of them?
  static func readsFlags(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.aluEG, DC.aluGE, DC.aluAI, DC.aluEI: return d.op == 2 || d.op == 3  // ADC, SBB
    case DC.jcc, DC.pushf, DC.cmov, DC.setcc: return true
    case DC.shift: return d.op == 2 || d.op == 3  // RCL, RCR
    default: return arithReadsFlags(d)
    }
  }
  /// Branches end a block.
  static func endsBlock(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    // STI and a POPF that may set IF: BlockCompilerSystem.swift.
    case DC.jcc, DC.jmp, DC.call, DC.ret, DC.jmpInd, DC.callInd, DC.sti, DC.popf: return true
    default: return false
    }
  }
  /// Does the instruction access memory (through the inline TLB check, so it may leave
  /// the block)?
  static func accessesMemory(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.pushR, DC.popR, DC.call, DC.ret, DC.callInd, DC.pushf, DC.popf, DC.leave, DC.pushI:
      return true
    case DC.lea, DC.nop, DC.jcc, DC.jmp, DC.aluAI, DC.movRI, DC.cbw, DC.cwd: return false
    default: return !d.isReg
    }
  }
  static func writesAllFlags(_ d: DecodedInsn) -> Bool {
    switch d.kind {
    case DC.aluEG, DC.aluGE, DC.aluAI, DC.aluEI, DC.test, DC.testI, DC.imul, DC.popf, DC.neg:
      return true
    default: return arithWritesAllFlags(d)  // shifts may count 0; INC/DEC keep CF
    }
  }

  /// A compiled block: its code (entered at offset 0 from Swift) and the offset of the
  /// entry a chained predecessor jumps to with the guest flags in the host's EFLAGS.
  struct Compiled {
    var bytes: [UInt8]
    var chainEntry: Int
    var pageEntry: Int?
  }

  /// Compiles `insns` (`length` guest bytes from RIP `start`).
  func compile(_ insns: [DecodedInsn], rip start: UInt64, length: Int) -> Compiled {
    var e = X86Encoder()
    let ctx = Self.ctx
    // Flags live before each instruction (the block's end counts as a use, and so does a
    // memory access: its side exit hands the flags to the interpreter, where a fault
    // pushes them). `liveAfterCheck`: live after instruction i's own TLB check.
    var liveBefore = [Bool](repeating: true, count: insns.count)
    var liveAfterCheck = [Bool](repeating: true, count: insns.count)
    var live = true
    for i in insns.indices.reversed() {
      let d = insns[i]
      live = Self.readsFlags(d) || (!Self.writesAllFlags(d) && live)
      liveAfterCheck[i] = live
      live = live || Self.accessesMemory(d)
      liveBefore[i] = live
    }
    // Guest status flags into the host's EFLAGS.
    e.load(.rax, HostMem(ctx, 0))
    e.push(.rax)
    e.popfq()
    let top = e.newLabel()
    e.bind(top)
    let count = Int32(insns.count)
    var sideExits: [(Label, Int, UInt64)] = []

    /// Leaves with RIP `next`: the flags go back to the context. An exit to a known RIP
    /// starts with a jump to the next instruction that chaining may retarget at the next
    /// block, and hands back that jump's address in context word 2.
    func exit(_ next: UInt64?, chainable: Bool = true) {
      if chain && chainable && next != nil {
        let l = e.newLabel()
        e.jmp(l)
        let site = e.bytes.count - 4
        e.bind(l)
        e.movImm(.rcx, UInt64(codeAt) &+ UInt64(site))
        e.store(HostMem(ctx, 16), .rcx)
      }
      e.pushfq()
      e.pop(.rcx)
      e.store(HostMem(ctx, 0), .rcx)
      if let next { e.movImm(.rax, next) } else { e.mov(.rax, .r10) }  // nil: RIP is in R10
      e.ret()
    }
    /// Branches back to this block's start: loops in host code while the budget lasts.
    func loopOrExit(_ target: UInt64) {
      guard target == start else {
        exit(target)
        return
      }
      // LAHF/SETO keep the flags around the budget check (POPFQ is far slower), and they
      // are put back only if the block's start reads them.
      let out = e.newLabel()
      e.lahf()
      e.setcc(.o, .rax)
      e.alu(.sub, HostMem(ctx, 8), imm: count)
      e.jcc(.b, out)
      if liveBefore[0] {
        e.alu(.add, .rax, imm: 0x7F, .b8)
        e.sahf()
      }
      e.jmp(top)
      e.bind(out)
      e.alu(.add, HostMem(ctx, 8), imm: count)  // not enough budget: undo, leave at the start
      e.alu(.add, .rax, imm: 0x7F, .b8)
      e.sahf()
      exit(start, chainable: false)
    }
    /// The effective (linear: 64-bit mode) address of a memory operand into R8, without
    /// touching the flags.
    func address(_ d: DecodedInsn, next: UInt64) {
      if d.ripRel {
        e.movImm(.r8, next &+ d.disp)
      } else {
        if d.rm != 0xFF { e.load(.r8, reg(d.rm)) } else { e.movImm(.r8, 0) }
        if d.index != 0xFF {
          e.load(.r9, reg(d.index))
          e.lea(.r8, HostMem(.r8, d.disp32, index: .r9, scale: UInt8(1 << d.scale)))
        } else if d.disp32 != 0 {
          e.lea(.r8, HostMem(.r8, d.disp32))
        }
      }
      if d.seg == UInt8(FS) || d.seg == UInt8(GS) {
        e.movImm(.r9, UInt64(UInt(bitPattern: segBase + Int(d.seg))))
        e.load(.r9, HostMem(.r9))
        e.lea(.r8, HostMem(.r8, 0, index: .r9))
      }
    }
    /// The inline soft-TLB check for `size` bytes at R8; on a hit R9 + R8 is the host
    /// address. A miss, a page-crossing access, or (for a write) a store into this
    /// block's own page leaves the block before instruction `i`, for the interpreter.
    func tlbCheck(_ i: Int, pc: UInt64, size: Int, write: Bool, aligned: Bool = false) {
      let slow = e.newLabel()
      sideExits.append((slow, i, pc))
      e.lahf()
      e.setcc(.o, .rax)
      e.mov(.rdx, .r8)
      e.shift(.shr, .rdx, imm: 12)
      e.alu(.and, .rdx, imm: Int32(TLB.mask), .b32)
      // The tag of the page holding the access's last byte: a page-crossing access misses.
      e.lea(.rcx, HostMem(.r8, Int32(size - 1)))
      e.alu(.and, .rcx, imm: -4096)
      if user { e.alu(.or, .rcx, imm: 1) }
      e.movImm(.r9, UInt64(UInt(bitPattern: write ? tlb.wtag : tlb.rtag)))
      e.alu(.cmp, .rcx, HostMem(.r9, 0, index: .rdx, scale: 8))
      e.jcc(.ne, slow)
      if aligned {
        e.test(.r8, imm: 15)  // misaligned: #GP from the interpreter
        e.jcc(.ne, slow)
      }
      e.movImm(.r9, UInt64(UInt(bitPattern: write ? tlb.wadd : tlb.radd)))
      e.load(.r9, HostMem(.r9, 0, index: .rdx, scale: 8))
      if write {
        e.lea(.rcx, HostMem(.r9, 0, index: .r8))
        e.shift(.shr, .rcx, imm: 12)
        e.movImm(.rdx, UInt64(hostPage))
        e.alu(.cmp, .rcx, .rdx)
        e.jcc(.e, slow)
      }
      if liveAfterCheck[i] {
        e.alu(.add, .rax, imm: 0x7F, .b8)
        e.sahf()
      }
    }
    func hostMem() -> HostMem { HostMem(.r9, 0, index: .r8) }
    /// RET (64-bit mode, CS base 0; target RIP in R10): if the target page is in the fetch
    /// TLB and the jump cache holds the block at that host address and RIP in this mode,
    /// jump to its chain entry (which takes the budget and checks its bytes); else fall
    /// through to the exit, flags intact.
    func jumpCacheLookup() {
      let miss = e.newLabel()
      e.lahf()
      e.setcc(.o, .rax)
      e.mov(.rdx, .r10)
      e.shift(.shr, .rdx, imm: 12)
      e.alu(.and, .rdx, imm: Int32(TLB.mask), .b32)
      e.mov(.rcx, .r10)
      e.alu(.and, .rcx, imm: -4096)
      if user { e.alu(.or, .rcx, imm: 1) }
      e.movImm(.r9, UInt64(UInt(bitPattern: tlb.xtag)))
      e.alu(.cmp, .rcx, HostMem(.r9, 0, index: .rdx, scale: 8))
      e.jcc(.ne, miss)
      e.movImm(.r9, UInt64(UInt(bitPattern: tlb.xadd)))
      e.load(.r9, HostMem(.r9, 0, index: .rdx, scale: 8))
      e.alu(.add, .r9, .r10)  // the target's host address
      e.movImm(.rcx, UInt64(keyMode))
      e.alu(.or, .rcx, .r9)  // its key
      e.movImm(.rdx, BlockTranslator.golden)
      e.imul(.rdx, .rcx)
      e.shift(.shr, .rdx, imm: UInt8(64 - BlockTranslator.jumpCacheBits))
      e.shift(.shl, .rdx, imm: 5)
      e.movImm(.r9, UInt64(UInt(bitPattern: jumpCache)))
      e.alu(.add, .r9, .rdx)
      e.alu(.cmp, .rcx, HostMem(.r9, 0))
      e.jcc(.ne, miss)
      e.alu(.cmp, .r10, HostMem(.r9, 8))
      e.jcc(.ne, miss)
      e.load(.rcx, HostMem(.r9, 16))
      e.alu(.add, .rax, imm: 0x7F, .b8)
      e.sahf()
      e.jmp(.rcx)
      e.bind(miss)
      e.alu(.add, .rax, imm: 0x7F, .b8)
      e.sahf()
    }

    var pc = start
    for (i, d) in insns.enumerated() {
      let s = OpSize(rawValue: Int(d.size))!
      let next = (pc &+ UInt64(d.len)) & codeMask
      let op = ALUOp(rawValue: d.op & 7)!
      /// Guest register `i` at this instruction's operand size.
      func greg(_ i: UInt8) -> HostMem { reg(i, s, rex: d.rex) }
      /// Writes `src` to guest register `i`: 32-bit results zero-extend (the value in `src`
      /// already is), 8- and 16-bit ones merge.
      func setReg(_ i: UInt8, _ src: HostReg) {
        if s.rawValue >= 4 { e.store(reg(i), src) } else { e.store(greg(i), src, s) }
      }
      /// Reads the E operand into `dst` (register or memory; `write`: the RMW check).
      func readE(_ dst: HostReg, write: Bool) {
        if d.isReg {
          e.load(dst, greg(d.rm), s)
        } else {
          address(d, next: next)
          tlbCheck(i, pc: pc, size: s.rawValue, write: write)
          e.load(dst, hostMem(), s)
        }
      }
      /// Writes `src` to the E operand read by `readE` (same address).
      func writeE(_ src: HostReg) {
        if d.isReg { setReg(d.rm, src) } else { e.store(hostMem(), src, s) }
      }
      /// The E operand of `size` bytes to read (a memory operand after its TLB check).
      func sourceE(_ size: OpSize) -> HostMem {
        if d.isReg { return reg(d.rm, size, rex: d.rex) }
        address(d, next: next)
        tlbCheck(i, pc: pc, size: size.rawValue, write: false)
        return hostMem()
      }
      switch d.kind {
      case DC.aluEG:
        readE(.r10, write: op != .cmp)
        e.load(.r11, greg(d.reg), s)
        e.alu(op, .r10, .r11, s)
        if op != .cmp { writeE(.r10) }
      case DC.aluGE:
        readE(.r11, write: false)
        e.load(.r10, greg(d.reg), s)
        e.alu(op, .r10, .r11, s)
        if op != .cmp { setReg(d.reg, .r10) }
      case DC.aluAI:
        e.load(.r10, greg(0), s)
        e.alu(op, .r10, imm: Int32(truncatingIfNeeded: d.imm), s)
        if op != .cmp { setReg(0, .r10) }
      case DC.aluEI:
        readE(.r10, write: op != .cmp)
        e.alu(op, .r10, imm: Int32(truncatingIfNeeded: d.imm), s)
        if op != .cmp { writeE(.r10) }
      case DC.test:
        readE(.r10, write: false)
        e.load(.r11, greg(d.reg), s)
        e.test(.r10, .r11, s)
      case DC.testI:
        readE(.r10, write: false)
        e.test(.r10, imm: Int32(truncatingIfNeeded: d.imm), s)
      case DC.movEG:
        if d.isReg {
          // A 32-bit load zero-extends, and the 64-bit store writes that: as the guest's move.
          e.load(.r10, greg(d.reg), s)
          setReg(d.rm, .r10)
        } else {
          address(d, next: next)
          tlbCheck(i, pc: pc, size: s.rawValue, write: true)
          e.load(.r10, greg(d.reg), s)
          e.store(hostMem(), .r10, s)
        }
      case DC.movGE:
        readE(.r10, write: false)
        setReg(d.reg, .r10)
      case DC.movzx:
        let from: OpSize = d.op == 1 ? .b8 : .b16
        if d.isReg {
          e.loadZX(.r10, reg(d.rm, from, rex: d.rex), from)
        } else {
          address(d, next: next)
          tlbCheck(i, pc: pc, size: from.rawValue, write: false)
          e.loadZX(.r10, hostMem(), from)
        }
        e.store(reg(d.reg), .r10)
      case DC.movRI:
        e.movImm(.r10, s == .b64 ? d.imm : d.imm & 0xFFFF_FFFF)
        setReg(d.reg, .r10)
      case DC.movEI:
        let v = s == .b64 ? d.imm : d.imm & 0xFFFF_FFFF
        if d.isReg {
          e.movImm(.r10, v)
          setReg(d.rm, .r10)
        } else {
          address(d, next: next)
          tlbCheck(i, pc: pc, size: s.rawValue, write: true)
          e.movImm(.r10, v)
          e.store(hostMem(), .r10, s)
        }
      case DC.lea:
        if d.ripRel {
          let v = next &+ d.disp
          e.movImm(.r10, s == .b64 ? v : v & 0xFFFF_FFFF)
        } else {
          if d.rm != 0xFF { e.load(.r10, reg(d.rm)) } else { e.movImm(.r10, 0) }
          let idx: HostReg? = d.index != 0xFF ? .r11 : nil
          if d.index != 0xFF { e.load(.r11, reg(d.index)) }
          // Outside 64-bit mode addresses are 32 bits: the 32-bit LEA truncates the same way.
          let size: OpSize = s == .b64 && mode64 ? .b64 : .b32
          e.lea(.r10, HostMem(.r10, d.disp32, index: idx, scale: UInt8(1 << d.scale)), size)
        }
        e.store(reg(d.reg), .r10)
      case DC.shift:
        let sop = ShiftOp(rawValue: d.op == 6 ? 4 : d.op)!  // /6 (SAL) acts as SHL
        readE(.r10, write: true)
        if d.imm == 0x100 {
          e.load(.rcx, reg(1))
          e.shiftCL(sop, .r10, s)
        } else {
          e.shift(sop, .r10, imm: UInt8(truncatingIfNeeded: d.imm), s)
        }
        writeE(.r10)
      case DC.incdec:
        readE(.r10, write: true)
        if d.op == 1 { e.dec(.r10, s) } else { e.inc(.r10, s) }
        writeE(.r10)
      case DC.imul:
        readE(.r11, write: false)
        e.load(.r10, greg(d.reg), s)
        e.imul(.r10, .r11, s)
        setReg(d.reg, .r10)
      case DC.jcc:
        let target = branchTarget(next, d)
        let taken = e.newLabel()
        e.jcc(Cond(rawValue: d.op & 0xF)!, taken)
        exit(next)
        e.bind(taken)
        loopOrExit(target)
        return finish(&e, sideExits, count, top: top, rip: start, length: length)
      case DC.jmp:
        loopOrExit(branchTarget(next, d))
        return finish(&e, sideExits, count, top: top, rip: start, length: length)
      // The stack in 64-bit mode (SS base 0, 8-byte slots): RSP changes only after the
      // access succeeded, so a side exit leaves it as the interpreter expects.
      case DC.pushR, DC.pushI, DC.call:
        switch d.kind {
        case DC.pushR: e.load(.r10, reg(d.reg))
        case DC.pushI: e.movImm(.r10, d.imm)  // PUSH imm: BlockCompilerSSE.swift
        default: e.movImm(.r10, next)
        }
        e.load(.r8, reg(4))
        e.lea(.r8, HostMem(.r8, -8))
        tlbCheck(i, pc: pc, size: 8, write: true)
        e.store(hostMem(), .r10)
        e.store(reg(4), .r8)
        if d.kind == DC.call {
          exit(branchTarget(next, d))
          return finish(&e, sideExits, count, top: top, rip: start, length: length)
        }
      case DC.popR, DC.ret:
        e.load(.r8, reg(4))
        tlbCheck(i, pc: pc, size: 8, write: false)
        e.load(.r10, hostMem())
        e.lea(.r8, HostMem(.r8, 8))
        e.store(reg(4), .r8)
        if d.kind == DC.ret {
          if chain { jumpCacheLookup() }
          exit(nil)
          return finish(&e, sideExits, count, top: top, rip: start, length: length)
        }
        e.store(reg(d.reg), .r10)  // after RSP: POP RSP loads the popped value
      case DC.movsx, DC.movsxd:
        // MOVSXD without REX.W moves 32 bits (or their low 16): a plain load.
        let from: OpSize = d.kind == DC.movsxd ? .b32 : d.op == 1 ? .b8 : .b16
        let src = sourceE(from)
        if from.rawValue < s.rawValue { e.loadSX(.r10, src, from, s) } else { e.load(.r10, src, s) }
        setReg(d.reg, .r10)
      case DC.cmov:
        // The source is read (and may fault) whatever the condition, as on the hardware.
        e.load(.r11, sourceE(s), s)
        e.load(.r10, greg(d.reg), s)
        e.cmov(Cond(rawValue: d.op & 0xF)!, .r10, .r11, s)
        setReg(d.reg, .r10)
      case DC.setcc:
        let dst: HostMem
        if d.isReg {
          dst = reg(d.rm, .b8, rex: d.rex)
        } else {
          address(d, next: next)
          tlbCheck(i, pc: pc, size: 1, write: true)
          dst = hostMem()
        }
        e.setcc(Cond(rawValue: d.op & 0xF)!, .r10)
        e.store(dst, .r10, .b8)
      case DC.not, DC.neg:
        readE(.r10, write: true)
        if d.kind == DC.not { e.not(.r10, s) } else { e.neg(.r10, s) }
        writeE(.r10)
      case DC.leave:
        // RSP = RBP, then POP RBP (64-bit mode: SS base 0); RSP and RBP change only after
        // the access succeeded.
        e.load(.r8, reg(5))
        tlbCheck(i, pc: pc, size: 8, write: false)
        e.load(.r10, hostMem())
        e.lea(.r8, HostMem(.r8, 8))
        e.store(reg(4), .r8)
        e.store(reg(5), .r10)
      case DC.cmpxchg:
        // CMP acc, dest; equal: dest = src, else dest written back and acc = dest
        // (BlockCompilerArith.swift: no host atomics for LOCK).
        readE(.r10, write: true)
        let fail = e.newLabel()
        let done = e.newLabel()
        e.load(.r11, greg(0), s)
        e.alu(.cmp, .r11, .r10, s)
        e.jcc(.ne, fail)
        e.load(.r11, greg(d.reg), s)
        writeE(.r11)
        e.jmp(done)
        e.bind(fail)
        writeE(.r10)
        setReg(0, .r10)
        e.bind(done)
      case DC.xadd:
        readE(.r10, write: true)
        e.load(.r11, greg(d.reg), s)
        e.mov(.rcx, .r10)
        e.alu(.add, .r10, .r11, s)
        if d.isReg {
          setReg(d.reg, .rcx)
          setReg(d.rm, .r10)  // XADD r, r: the sum wins
        } else {
          e.store(hostMem(), .r10, s)
          setReg(d.reg, .rcx)
        }
      case DC.cbw, DC.cwd:
        emitSignExtendAccumulator(&e, d, s)
      case DC.mulDiv:
        readE(.r11, write: false)
        let slow = e.newLabel()
        if d.op >= 6 { sideExits.append((slow, i, pc)) }
        emitMulDiv(&e, d, s, slow: slow)
      case DC.bitScan:
        readE(.r11, write: false)
        let slow = e.newLabel()
        sideExits.append((slow, i, pc))
        emitBitScan(&e, d, s, slow: slow)
      // SSE forms: BlockCompilerSSE.swift.
      case DC.sse:
        var mem: HostMem?
        if !d.isReg {
          let f = Self.sseForm(d)
          address(d, next: next)
          tlbCheck(
            i, pc: pc, size: Self.sseAccessSize(d, f),
            write: f.shape == .store || f.shape == .fromXMM,
            aligned: f.aligned)
          mem = hostMem()
        }
        emitSSE(&e, d, mem: mem)
      // IF and the system flags: BlockCompilerSystem.swift.
      case DC.cli, DC.sti:
        emitInterruptFlag(&e, set: d.kind == DC.sti)
        if d.kind == DC.sti {
          exit(next, chainable: false)
          return finish(&e, sideExits, count, top: top, rip: start, length: length)
        }
      case DC.cld, DC.std:
        emitDirectionFlag(&e, set: d.kind == DC.std)
      case DC.bswap:
        e.load(.r10, reg(d.reg))
        e.bswap(.r10, s)
        e.store(reg(d.reg), .r10)  // BSWAP r32 zero-extends
      case DC.pushf:
        e.load(.r8, reg(4))
        e.lea(.r8, HostMem(.r8, -8))
        tlbCheck(i, pc: pc, size: 8, write: true)
        emitFlagsImage(&e)
        e.store(hostMem(), .r10)
        e.store(reg(4), .r8)
      case DC.popf:
        e.load(.r8, reg(4))
        tlbCheck(i, pc: pc, size: 8, write: false)
        e.load(.r10, hostMem())
        let slow = e.newLabel()
        sideExits.append((slow, i, pc))
        emitPOPF(&e, slow: slow)
        e.lea(.r8, HostMem(.r8, 8))
        e.store(reg(4), .r8)
        exit(next, chainable: false)
        return finish(&e, sideExits, count, top: top, rip: start, length: length)
      // Indirect JMP/CALL (64-bit mode): the target into R10, then (CALL) the push, which
      // may still leave the block with nothing changed; the jump cache as for RET.
      case DC.jmpInd, DC.callInd:
        readE(.r10, write: false)
        if d.kind == DC.callInd {
          e.load(.r8, reg(4))
          e.lea(.r8, HostMem(.r8, -8))
          tlbCheck(i, pc: pc, size: 8, write: true)
          e.movImm(.r11, next)
          e.store(hostMem(), .r11)
          e.store(reg(4), .r8)
        }
        if chain { jumpCacheLookup() }
        exit(nil)
        return finish(&e, sideExits, count, top: top, rip: start, length: length)
      default:  // DC.nop
        break
      }
      pc = next
    }
    exit(pc)
    return finish(&e, sideExits, count, top: top, rip: start, length: length)
  }

  /// Appends the side exits: restore the flags saved before the TLB check, hand back the
  /// instructions this pass did not retire, and return the faulting-or-missing
  /// instruction's RIP for the interpreter to run.
  func finish(
    _ e: inout X86Encoder, _ exits: [(Label, Int, UInt64)], _ count: Int32, top: Label,
    rip start: UInt64, length: Int
  ) -> Compiled {
    for (label, i, pc) in exits {
      e.bind(label)
      e.alu(.add, .rax, imm: 0x7F, .b8)
      e.sahf()
      e.pushfq()
      e.pop(.rcx)
      e.store(HostMem(Self.ctx, 0), .rcx)
      e.alu(.add, HostMem(Self.ctx, 8), imm: count - Int32(i))
      e.movImm(.rax, pc)
      e.ret()
    }
    let (entry, pageEntry) = chainEntry(&e, count, top: top, rip: start, length: length)
    precondition(e.isResolved)
    return Compiled(bytes: e.bytes, chainEntry: entry, pageEntry: pageEntry)
  }

  /// The entries a chained predecessor jumps to, guest flags in EFLAGS: the chain entry
  /// takes this block's instructions from the budget and checks that the guest bytes are
  /// still the ones translated (stores and DMA need no invalidation hook), then runs the
  /// block; if either fails it leaves for Swift at the block's RIP, the budget untouched.
  /// The page entry (64-bit mode only; nil otherwise), for a predecessor on another page,
  /// first checks that the fetch TLB still maps this block's RIP (its linear address) to
  /// the host page it was translated from, as Swift's entry does. Returns their offsets.
  func chainEntry(
    _ e: inout X86Encoder, _ count: Int32, top: Label, rip: UInt64, length: Int
  ) -> (Int, Int?) {
    let ctx = Self.ctx
    let fail = e.newLabel()
    let failEarly = e.newLabel()
    let checked = e.newLabel()
    var pageEntry: Int?
    if mode64 {
      pageEntry = e.bytes.count
      let slot = Int(truncatingIfNeeded: rip >> 12) & TLB.mask
      e.lahf()
      e.setcc(.o, .rax)
      e.movImm(.rcx, (rip & ~0xFFF) | (user ? 1 : 0))
      e.movImm(.rdx, UInt64(UInt(bitPattern: tlb.xtag + slot)))
      e.alu(.cmp, .rcx, HostMem(.rdx))
      e.jcc(.ne, failEarly)
      let addend = Int(bitPattern: UInt(bitPattern: guest)) &- Int(bitPattern: UInt(rip))
      e.movImm(.rcx, UInt64(UInt(bitPattern: addend)))
      e.movImm(.rdx, UInt64(UInt(bitPattern: tlb.xadd + slot)))
      e.alu(.cmp, .rcx, HostMem(.rdx))
      e.jcc(.ne, failEarly)
      e.jmp(checked)
    }
    let entry = e.bytes.count
    e.lahf()
    e.setcc(.o, .rax)
    e.bind(checked)
    e.alu(.sub, HostMem(ctx, 8), imm: count)
    e.jcc(.b, fail)  // the SUB happened: undone at `fail`
    // 8-byte words covering the bytes, the last one overlapping; a block shorter than 8
    // bytes compares 8 anyway (it starts at most 4080 bytes into its page).
    e.movImm(.rcx, UInt64(UInt(bitPattern: guest)))
    var offsets = Array(stride(from: 0, to: max(length - 8, 0), by: 8))
    offsets.append(max(length - 8, 0))
    for off in offsets {
      e.movImm(.rdx, guest.loadUnaligned(fromByteOffset: off, as: UInt64.self))
      e.alu(.cmp, .rdx, HostMem(.rcx, Int32(off)))
      e.jcc(.ne, fail)
    }
    e.alu(.add, .rax, imm: 0x7F, .b8)
    e.sahf()
    e.jmp(top)
    e.bind(fail)
    e.alu(.add, HostMem(ctx, 8), imm: count)
    e.bind(failEarly)
    e.alu(.add, .rax, imm: 0x7F, .b8)
    e.sahf()
    e.pushfq()
    e.pop(.rcx)
    e.store(HostMem(ctx, 0), .rcx)
    e.movImm(.rax, rip)
    e.ret()
    return (entry, pageEntry)
  }

  /// A direct branch's target, as the interpreter computes it.
  func branchTarget(_ next: UInt64, _ d: DecodedInsn) -> UInt64 {
    InterpreterCPU.relativeBranchTarget(next, d.disp, Int(d.size), mode64: mode64)
  }
}
