import Engine
import Memory
import Synchronization
import X86

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Knobs for the interpreter engine.
public struct InterpreterOptions {
  /// Stop with `.instructionLimit` after this many instructions (watchdog).
  public var maxInstructions: UInt64?
  /// How RDTSC advances. `.hostClock`: host monotonic nanoseconds scaled to
  /// `tscFrequencyHz` (interactive; guest time tracks wall time).
  /// `.instructionCount`: one tick per retired instruction (deterministic).
  public var timeSource: TimeSource = .hostClock
  /// Nominal TSC frequency used by `.hostClock`.
  public var tscFrequencyHz: UInt64 = 1_000_000_000
  /// MMU mode (see MMUModes.swift); the VMM programs the nested/shadow state.
  public var mmuMode: MMUMode = .direct

  public enum TimeSource: Sendable { case hostClock, instructionCount }
  public init() {}
}

/// Internal "exception" used to abort the current instruction.
/// vector < 32: architectural exception. `exitVector`: an exit is pending.
struct Fault: Error {
  var vector: UInt16
  var code: UInt32
  var hasCode: Bool
  static let exitVector: UInt16 = 0x100
  @inline(__always) static func gp(_ c: UInt32 = 0) -> Fault {
    Fault(vector: 13, code: c, hasCode: true)
  }
  @inline(__always) static func ud() -> Fault { Fault(vector: 6, code: 0, hasCode: false) }
  @inline(__always) static func ss(_ c: UInt32 = 0) -> Fault {
    Fault(vector: 12, code: c, hasCode: true)
  }
  @inline(__always) static func np(_ c: UInt32) -> Fault {
    Fault(vector: 11, code: c, hasCode: true)
  }
  @inline(__always) static func ts(_ c: UInt32) -> Fault {
    Fault(vector: 10, code: c, hasCode: true)
  }
  @inline(__always) static func de() -> Fault { Fault(vector: 0, code: 0, hasCode: false) }
  @inline(__always) static func nm() -> Fault { Fault(vector: 7, code: 0, hasCode: false) }
  static let exit = Fault(vector: exitVector, code: 0, hasCode: false)
}

// Segment register indices (encoding order).
let ES = 0
let CS = 1
let SS = 2
let DS = 3
let FS = 4
let GS = 5

/// The x86-64 interpreter: decodes and executes every guest instruction in software.
public final class InterpreterCPU: VirtualCPU, SoftwareMMUHardware {
  public var engineName: String { translator == nil ? "interpreter" : "translator" }
  public var interruptInput: InterruptInput?
  /// The VMM's platform: shared TSC and platform MSRs (APIC base, TSC deadline,
  /// kvm-clock). nil: the CPU keeps them itself.
  public var platform: PlatformHooks?
  /// Initial APIC ID, which CPUID reports (leaf 1 EBX[31:24], leaf 0xB EDX).
  public var apicID: UInt8 = 0
  /// PAUSE returns `.interrupted` after it retires, so a spinning vCPU hands its
  /// turn to the others (SMP on one thread: the lock holder may be waiting).
  public var yieldOnPause = false

  let memory: GuestMemory
  let cpuid: CPUIDPolicy
  let options: InterpreterOptions
  private let kicked = Atomic<Bool>(false)

  // MARK: Architectural state (pointers: no CoW, no bounds checks, no ARC on access)
  let r: UnsafeMutablePointer<UInt64>  // 16 GPRs
  var rip: UInt64 = 0
  /// RFLAGS; the status bits are valid only while `fOp == .none`.
  var rfl: UInt64 = 2
  var fOp: FlagOp = .none
  var fSize: Int = 4
  var fRes: UInt64 = 0
  var fA: UInt64 = 0
  var fB: UInt64 = 0
  var fCin: UInt64 = 0

  let seg: UnsafeMutablePointer<SegmentRegister>  // ES CS SS DS FS GS
  /// Effective segment bases (0 for ES/CS/SS/DS in 64-bit mode).
  let segBase: UnsafeMutablePointer<UInt64>
  var ldtr = SegmentRegister(selector: 0, base: 0, limit: 0xFFFF, type: 0x2, s: false)
  var tr = SegmentRegister(selector: 0, base: 0, limit: 0xFFFF, type: 0xB, s: false)
  var gdtr = DescriptorTableRegister()
  var idtr = DescriptorTableRegister(base: 0, limit: 0x3FF)
  var cr0: UInt64 = 0x6000_0010
  var cr2: UInt64 = 0
  var cr3: UInt64 = 0
  var cr4: UInt64 = 0
  var cr8: UInt64 = 0
  var efer: UInt64 = 0
  var dr = [UInt64](repeating: 0, count: 8)
  var xcr0: UInt64 = 1

  // MSR storage.
  var apicBase: UInt64 = 0xFEE0_0900
  var star: UInt64 = 0
  var lstar: UInt64 = 0
  var cstar: UInt64 = 0
  var fmask: UInt64 = 0
  var kernelGSBase: UInt64 = 0
  var pat: UInt64 = 0x0007_0406_0007_0406
  var tscOffset: UInt64 = 0
  var tscAux: UInt64 = 0
  var tscDeadline: UInt64 = 0
  var miscEnable: UInt64 = 1
  var sysenterCS: UInt64 = 0
  var sysenterESP: UInt64 = 0
  var sysenterEIP: UInt64 = 0
  // As firmware leaves it: MTRRs and fixed ranges enabled, default type write-back.
  var mtrrDefType: UInt64 = 0xC06
  var mtrrs = [UInt32: UInt64]()
  var mcgStatus: UInt64 = 0
  var specCtrl: UInt64 = 0
  var kvmMSRs = [UInt32: UInt64]()

  // FPU / SSE state (minimal: control/status words, tag, MXCSR, raw register images).
  var fpuCW: UInt16 = 0x37F
  var fpuSW: UInt16 = 0
  var fpuTW: UInt8 = 0  // abridged tag (FXSAVE format)
  var mxcsr: UInt32 = 0x1F80
  /// x87/MMX registers (8 × 16 bytes, FXSAVE image) and XMM0-15 (16 × 16 bytes).
  let fpuRegs: UnsafeMutableRawPointer
  let xmm: UnsafeMutableRawPointer

  // MARK: Derived mode
  var cpl: Int = 0 {
    didSet { userKey = cpl == 3 ? 1 : 0 }
  }
  /// TLB tag bit for the current privilege (1 = user).
  var userKey: UInt64 = 0
  /// Default code size in bytes: 2, 4 or 8.
  var codeSize: Int = 2
  /// IP wrap mask for the code size.
  var codeMask: UInt64 = 0xFFFF
  /// Default operand size (2 or 4) for the code size.
  var defOpSize: Int = 2
  /// Stack address size in bytes: 2, 4 or 8.
  var stackSize: Int = 2
  var mode64 = false
  var protectedMode = false
  var longActive = false

  // MARK: Per-instruction decode state
  var startRIP: UInt64 = 0
  var ipos: Int = 0
  var fetchPtr: UnsafeMutableRawPointer?
  var fetchAvail: Int = 0
  var fetchBuf: UnsafeMutableRawPointer
  var opSize: Int = 4
  var adSize: Int = 4
  var segOvr: Int = -1
  var rex: UInt8 = 0
  var rep: UInt8 = 0  // 0, 0xF2, 0xF3
  var lockPrefix = false
  var has66 = false
  // ModRM
  var modReg: Int = 0
  var modRM: Int = 0
  var modIsReg = false
  var eaOff: UInt64 = 0
  var eaSeg: Int = DS
  var eaRipRel = false

  // MARK: Run control
  var stop = false
  var pendingExit: VMExit?
  /// An MMU event for the VMM's hooks; `pendingExit` then holds `mmuEventMarker`.
  var pendingMMU: MMUEvent?
  /// The VMM's MMU (weak: the VMM's MMU holds this CPU).
  public weak var mmuHooks: SoftwareMMUHooks?
  var interruptShadow = false
  /// SYSCALL/SYSRET just ran: single-step follows the TF they leave, not the
  /// TF they started with (SDM; Linux's "SYSRET with TF traps in user mode").
  var stepOnNewTF = false
  /// A single-stepped instruction ended in a port-I/O or MMIO exit: its #DB
  /// is due once it has completed, when the VMM resumes the CPU.
  var stepTrapOnResume = false
  /// Bit s: accesses through segment s need no limit/type check (SegmentChecks.swift).
  var segReadFlat = 0x3F
  var segWriteFlat = 0x3F
  /// CS has a limit below 4 GiB outside 64-bit mode: fetches are checked.
  var csLimited = false
  /// The decode cache's mode key: code size, 64-bit, CS limited (0x20: not cached).
  var dcMode: UInt8 = 2
  /// Set when an NMI is delivered, cleared by IRET (SDM 6.7.1).
  var nmiBlocked = false
  var halted = false
  /// Value supplied by completeIO for a restarted IN/INS or MMIO read.
  var ioValue: UInt64?
  /// Port | size << 16 of the IN that `ioValue` completes.
  var ioKey: UInt32 = 0
  /// The MMIO accesses the device has seen for the instruction being restarted, in
  /// program order (reads with the value the VMM returned): each restart replays
  /// them (MMIOReplay.swift), so every access reaches the device exactly once.
  var mmioCompleted: [MMIOAccess] = []
  /// How many of `mmioCompleted` this execution of the instruction has used.
  var mmioReplayed = 0
  /// MMIO writes an instruction made after its first exit: `run()` returns
  /// them in order before running anything else (MMU.swift `writeSlow`).
  var queuedMMIOWrites: [MMIOAccess] = []
  /// The MMIO read awaiting `completeIO`.
  var mmioAwaited = MMIOAccess(address: GuestPhysicalAddress(0), size: 0, isWrite: false)
  /// The instruction stopped to be restarted after an MMIO exit: keep `mmioCompleted`.
  var mmioRestart = false
  /// Past this many MMIO accesses in one instruction the VM stops (bounds memory).
  static let mmioAccessesPerInstruction = 1024
  /// Exit budget.
  var instructions: UInt64 = 0
  var limit: UInt64 = .max
  /// The VMM's next timer deadline in retired instructions: `run()` returns
  /// `.interrupted` there (instruction-count time needs exact, repeatable stops).
  public var pauseAt: UInt64 = .max
  /// `runBatch`: a translated block too long for the rest of the batch ends it.
  var budgetMissEndsBatch = false
  var hypercallPending = false
  var deliveringDepth = 0
  /// Events delivered (exceptions and interrupts); lets single-step see a delivery.
  var deliveries: UInt64 = 0

  // MARK: Debug registers (DebugRegisters.swift)
  /// DR7 enables a breakpoint: instructions run one at a time through `runDebugBatch`.
  var drActive = false
  /// DR7 enables a data breakpoint: its pages stay out of the TLB.
  var drDataActive = false
  /// Data breakpoints (bit per DRn) the current instruction hit.
  var drHits: UInt64 = 0
  /// Data breakpoints a MOV SS / POP SS hit, reported after the next instruction.
  var drDeferredHits: UInt64 = 0
  /// The instruction just run was MOV SS / POP SS: #DB traps wait one instruction.
  var movSSBlocking = false

  // MARK: Debug stops (InterpreterDebug.swift)
  var debug = DebugSettings()
  /// Breakpoints, watchpoints or single-step are set: instructions run one at a time.
  var debugActive = false
  /// `debug.singleStep`, as a plain flag for the run loop's per-batch check.
  var debugStepping = false
  /// Watchpoints are set: their pages stay out of the TLB, so accesses take the slow path.
  var watchActive = false
  /// The breakpoint just reported: the instruction there runs next time (like RFLAGS.RF).
  var debugResumeRIP: UInt64?
  /// Single-step: the instruction ran (its exit, if any, went to the VMM first).
  var debugStepTaken = false

  // MARK: MMU
  var tlb: TLB
  /// Pre-decoded instructions (DecodeCache.swift).
  let dcache: DecodeCache
  /// Translated blocks (TranslatorSupport.swift); nil: interpret everything.
  var translator: BlockTranslator?
  /// log2 of the largest page size cached since the last full flush (12 = only 4 KiB pages).
  var tlbLargestPage: UInt64 = 12
  let mmuHW = MMUHardwareState()

  // MARK: Counters
  var stats = Counters()

  /// Throws `EngineError.unavailable` when the host cannot map the decode cache.
  public init(memory: GuestMemory, cpuid: CPUIDPolicy, options: InterpreterOptions = .init())
    throws(EngineError)
  {
    dcache = try DecodeCache()
    self.memory = memory
    self.cpuid = cpuid
    self.options = options
    r = .allocate(capacity: 16)
    r.initialize(repeating: 0, count: 16)
    seg = .allocate(capacity: 6)
    seg.initialize(repeating: SegmentRegister.realMode(selector: 0), count: 6)
    seg[CS] = SegmentRegister.realMode(selector: 0, code: true)
    segBase = .allocate(capacity: 6)
    segBase.initialize(repeating: 0, count: 6)
    fpuRegs = .allocate(byteCount: 128, alignment: 16)
    fpuRegs.initializeMemory(as: UInt8.self, repeating: 0, count: 128)
    xmm = .allocate(byteCount: 256, alignment: 16)
    xmm.initializeMemory(as: UInt8.self, repeating: 0, count: 256)
    fetchBuf = .allocate(byteCount: 32, alignment: 16)
    tlb = TLB()
    if let m = options.maxInstructions { limit = m }
    let f1 = cpuid.lookup(leaf: 1, subleaf: 0)
    let f7 = cpuid.lookup(leaf: 7, subleaf: 0)
    let e1 = cpuid.lookup(leaf: 0x8000_0001, subleaf: 0)
    hasPOPCNT = f1.ecx & (1 << 23) != 0
    hasSSE3 = f1.ecx & CPUIDFeature.sse3 != 0
    hasSSSE3 = f1.ecx & CPUIDFeature.ssse3 != 0
    hasSSE41 = f1.ecx & CPUIDFeature.sse41 != 0
    hasSSE42 = f1.ecx & CPUIDFeature.sse42 != 0
    hasBMI1 = f7.ebx & (1 << 3) != 0
    hasBMI2 = f7.ebx & CPUIDFeature.bmi2 != 0
    hasMOVBE = f1.ecx & CPUIDFeature.movbe != 0
    hasLZCNT = e1.ecx & (1 << 5) != 0
    hasXSAVE = f1.ecx & (1 << 26) != 0
    hasCX16 = f1.ecx & (1 << 13) != 0
    hasRDTSCP = e1.edx & (1 << 27) != 0
    hasRDPID = f7.ecx & (1 << 22) != 0
    hasNX = e1.edx & (1 << 20) != 0
    has1G = e1.edx & (1 << 26) != 0
    hasFSGSBASE = f7.ebx & 1 != 0
    let e8 = cpuid.lookup(leaf: 0x8000_0008, subleaf: 0)
    // IA32_SPEC_CTRL: Intel IBRS/STIBP/SSBD (7.EDX 26, 27, 31) or AMD IBRS/STIBP/SSBD
    // (0x80000008 EBX 14, 15, 24); IA32_PRED_CMD: Intel 7.EDX 26 or AMD IBPB (EBX 12).
    hasSpecCtrl =
      f7.edx & (1 << 26 | 1 << 27 | 1 << 31) != 0 || e8.ebx & (1 << 14 | 1 << 15 | 1 << 24) != 0
    hasPredCmd = f7.edx & (1 << 26) != 0 || e8.ebx & (1 << 12) != 0
    // AMD always has its four legacy counters; Intel reports its count in leaf 0xA.
    let amd = cpuid.lookup(leaf: 0, subleaf: 0).ebx == 0x6874_7541  // "Auth"
    performanceCounters = amd ? 4 : (cpuid.lookup(leaf: 0xA, subleaf: 0).eax >> 8) & 0xFF
    hasAMDLegacyCounters = amd
    isAMD = amd
    updateMode()
  }

  deinit {
    r.deallocate()
    seg.deallocate()
    segBase.deallocate()
    fpuRegs.deallocate()
    xmm.deallocate()
    fetchBuf.deallocate()
    tlb.deallocate()
    dcache.deallocate()
  }

  // Feature flags from the CPUID policy.
  let hasPOPCNT: Bool
  let hasSSE3: Bool
  let hasSSSE3: Bool
  let hasSSE41: Bool
  let hasSSE42: Bool
  let hasBMI1: Bool
  let hasBMI2: Bool
  let hasMOVBE: Bool
  let hasLZCNT: Bool
  let hasXSAVE: Bool
  let hasCX16: Bool
  let hasRDTSCP: Bool
  let hasRDPID: Bool
  let hasNX: Bool
  let has1G: Bool
  let hasFSGSBASE: Bool
  let hasSpecCtrl: Bool
  let hasPredCmd: Bool
  let performanceCounters: UInt32
  /// PERF_CTL0-3 / PERF_CTR0-3 at MSRs 0xC0010000-7: programmable, never counting.
  let hasAMDLegacyCounters: Bool
  /// AMD's model-specific registers (HWCR) exist.
  let isAMD: Bool

  // MARK: VirtualCPU

  public internal(set) var lastException: ExceptionRecord?

  public func getState() throws -> CPUState {
    var g = GeneralRegisters()
    for i in 0..<16 { g[i] = r[i] }
    g.rip = rip
    g.rflags = flags
    var s = SpecialRegisters()
    s.es = seg[ES]
    s.cs = seg[CS]
    s.ss = seg[SS]
    s.ds = seg[DS]
    s.fs = seg[FS]
    s.gs = seg[GS]
    s.tr = tr
    s.ldt = ldtr
    s.gdt = gdtr
    s.idt = idtr
    s.cr0 = cr0
    s.cr2 = cr2
    s.cr3 = cr3
    s.cr4 = cr4
    s.cr8 = cr8
    s.efer = efer
    s.apicBase = apicBase
    return CPUState(general: g, special: s)
  }

  public func setState(_ state: CPUState) throws {
    stepTrapOnResume = false
    mmioCompleted.removeAll()
    mmioRestart = false
    for i in 0..<16 { r[i] = state.general[i] }
    rip = state.general.rip
    flags = state.general.rflags
    let s = state.special
    seg[ES] = s.es
    seg[CS] = s.cs
    seg[SS] = s.ss
    seg[DS] = s.ds
    seg[FS] = s.fs
    seg[GS] = s.gs
    tr = s.tr
    ldtr = s.ldt
    gdtr = s.gdt
    idtr = s.idt
    cr0 = s.cr0 | CR0.et
    cr2 = s.cr2
    cr3 = s.cr3
    cr4 = s.cr4
    cr8 = s.cr8
    efer = s.efer
    apicBase = s.apicBase
    // LMA follows from LME + PG as hardware would have computed it.
    if efer & EFER.lme != 0 && cr0 & CR0.pg != 0 { efer |= EFER.lma } else { efer &= ~EFER.lma }
    cpl = cr0 & CR0.pe == 0 ? 0 : Int(s.cs.dpl)
    updateMode()
    flushTLB(keepGlobal: false)
    halted = false
    nmiBlocked = false
  }

  public func completeIO(value: UInt64) {
    if pendingIn {
      ioValue = value; pendingIn = false
    } else if pendingMMIORead {
      mmioAwaited.value = value
      mmioCompleted.append(mmioAwaited)
      pendingMMIORead = false
    }
  }
  var pendingIn = false
  var pendingMMIORead = false

  /// Outside 64-bit mode the guest gets the low 32 bits, as KVM writes them.
  public func setHypercallResult(_ value: UInt64) { r[0] = mode64 ? value : value & 0xFFFF_FFFF }

  public func kick() { kicked.store(true, ordering: .releasing) }

  public func statistics() -> [String: UInt64] {
    stats.dictionary(instructions: instructions).merging(mmuStatistics()) { a, _ in a }
      .merging(translator?.statistics ?? [:]) { a, _ in a }
  }

  /// Runs guest code until an exit. MMU events go to the VMM's hooks here and the
  /// run continues (they are not `VMExit`s: only this engine has them).
  public func run() throws -> VMExit {
    while true {
      let e = try runUntilEvent()
      let event = pendingMMU
      pendingMMU = nil
      // An exit set after the event (a machine check later in the same
      // instruction) wins, as it would on hardware: the VM stops.
      guard let event, e == Self.mmuEventMarker else { return e }
      if let why = dispatchMMUEvent(event) { return record(.shutdown(reason: why)) }
    }
  }

  /// Runs guest code until an exit or an MMU event (then `pendingMMU` is set).
  private func runUntilEvent() throws -> VMExit {
    stop = false
    pendingExit = nil
    pendingMMU = nil
    if !queuedMMIOWrites.isEmpty { return record(.mmio(queuedMMIOWrites.removeFirst())) }
    if limit != .max && instructions >= limit {
      return record(.instructionLimit(instructions))
    }
    // A restarted IN/MMIO read must complete before anything else happens.
    if ioValue != nil || !mmioCompleted.isEmpty {
      let before = deliveries
      mmioReplayed = 0
      mmioRestart = false
      single()
      // Done with them unless it stopped again for one more access.
      if !mmioRestart { mmioCompleted.removeAll(keepingCapacity: true) }
      if deliveries != before { stepTrapOnResume = false }
      if drActive && !stepTrapOnResume { drAfterInstruction(singleStep: false) }
      if let e = finishBatch() { return e }
    }
    if stepTrapOnResume {
      stepTrapOnResume = false
      debugTrapAfterInstruction(singleStep: true)
      if let e = finishBatch() { return e }
    }
    if mmuHW.eventPending, let e = deliverMMUEvents() { return record(e) }
    while true {
      if kicked.load(ordering: .relaxed) {
        kicked.store(false, ordering: .relaxed)
        return record(.interrupted)
      }
      if debugStepping && !halted {
        if let e = debugSingleStep() { return e }
        continue
      }
      let stepping = rfl & RFLAGS.tf != 0 && !halted
      if interruptShadow || stepping {
        // One instruction: in an interrupt shadow (none is delivered before it), or
        // single-stepped (a #DB trap after it, unless it delivered an event). STI's
        // shadow does not block that trap; MOV SS's does (`movSSBlocking`).
        interruptShadow = false
        if drActive && drInstructionBreakpoint() {
          if let e = finishBatch() { return e }
          continue
        }
        let before = deliveries
        stepOnNewTF = false
        single()
        let trap = stepping && (!stepOnNewTF || rfl & RFLAGS.tf != 0) && deliveries == before
        stepOnNewTF = false
        if trap {
          switch pendingExit {
          case nil: debugTrapAfterInstruction(singleStep: true)
          case .portIO, .mmio: stepTrapOnResume = !movSSBlocking
          default: break
          }
        } else if drActive {
          drAfterInstruction(singleStep: false)
        }
        if let e = finishBatch() { return e }
        continue
      }
      // One load of the input for both checks: each load was a retain and a release.
      if let input = interruptInput {
        // NMI: not masked by IF; blocked from its delivery until the next IRET.
        if !nmiBlocked, input.hasPendingNMI {
          input.acknowledgeNMI()
          halted = false
          nmiBlocked = true
          stats.externalInterrupts &+= 1
          raise(2, 0, false, external: true)
          if let e = finishBatch() { return e }
          continue
        }
        if rfl & RFLAGS.if != 0, input.hasPendingInterrupt, let v = input.acknowledgeInterrupt() {
          halted = false
          stats.externalInterrupts &+= 1
          raise(UInt16(v), 0, false, external: true)
          if let e = finishBatch() { return e }
        }
      }
      if halted { return record(.halt) }
      if limit != .max && instructions >= limit {
        return record(.instructionLimit(instructions))
      }
      if instructions >= pauseAt { return record(.interrupted) }
      let budget = min(4096, limit &- instructions, pauseAt &- instructions)
      if debugActive { runDebugBatch(budget) } else { runBatch(budget) }
      if stepOnNewTF {
        // A SYSRET that set TF ended the batch: its trap comes before the next instruction.
        stepOnNewTF = false
        if rfl & RFLAGS.tf != 0 && pendingExit == nil {
          dr[6] |= 0x4000  // BS
          raise(1, 0, false)
        }
      }
      if let e = finishBatch() { return e }
    }
  }

  @inline(__always) func single() {
    stop = false
    movSSBlocking = false
    do {
      try step()
    } catch {
      handleFault(error)
    }
    instructions &+= 1
  }

  /// Executes up to `budget` instructions or until something sets `stop`.
  private func runBatch(_ budget: UInt64) {
    var n = budget
    stop = false
    // Unretained: a strong local was still retained and released around every call.
    let translator = self.translator.map { Unmanaged.passUnretained($0) }
    // With no instruction count to stop at exactly (no limit, no armed stop, host time),
    // a block that does not fit what is left of the batch ends it early (`runBlock`),
    // rather than being interpreted an instruction at a time, each step a block lookup
    // that translated the block's suffixes as blocks of their own.
    budgetMissEndsBatch = limit == .max && pauseAt == .max && options.timeSource == .hostClock
    while n != 0 {
      // Translated blocks check no CS limit: code under one is interpreted.
      if let t = translator, !csLimited {
        let k = t._withUnsafeGuaranteedRef { runBlock($0, n) }
        if k != 0 {
          n &-= k
          if stop { break }  // an STI or POPF set IF: interrupts come first
          continue
        }
        if stop { break }  // the block at RIP did not fit: the next batch runs it
      }
      do {
        try stepCached()
      } catch {
        handleFault(error)
      }
      n &-= 1
      if stop { break }
    }
    instructions &+= budget &- n
  }

  /// After a batch: an exit to return, or nil to continue.
  func finishBatch() -> VMExit? {
    stop = false
    if let e = pendingExit {
      pendingExit = nil
      return record(e)
    }
    return nil
  }

  func record(_ e: VMExit) -> VMExit {
    // MMU events are counted when dispatched.
    if pendingMMU == nil || e != Self.mmuEventMarker { stats.countExit(e) }
    return e
  }

  /// Ends the batch with an exit after the current instruction.
  @inline(__always) func exit(_ e: VMExit) {
    pendingExit = e
    stop = true
  }

  func handleFault(_ f: Fault) {
    if f.vector == Fault.exitVector {
      stop = true
      return
    }
    // The faulting instruction is abandoned: a value the VMM completed for it must not
    // be handed to whatever IN or MMIO read runs next (the handler's, for one).
    ioValue = nil
    dropMMIOProgress()
    raise(f.vector, f.code, f.hasCode, external: false)
    drHits = 0  // a faulting instruction reports no data breakpoint
  }

  // MARK: Time

  /// The guest's TSC. One function so the time source can be swapped.
  @inline(never) func readTSC() -> UInt64 {
    if let platform { return platform.readTSC() }
    switch options.timeSource {
    case .instructionCount:
      return instructions &+ tscOffset
    case .hostClock:
      var ts = timespec()
      clock_gettime(CLOCK_MONOTONIC, &ts)
      let ns = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
      let ticks =
        options.tscFrequencyHz == 1_000_000_000
        ? ns : UInt64((Double(ns) * Double(options.tscFrequencyHz) / 1e9))
      return ticks &+ tscOffset
    }
  }
}

/// Event counters reported by `statistics()`.
struct Counters {
  var tlbHits: UInt64 = 0
  var tlbMisses: UInt64 = 0
  var tlbFlushes: UInt64 = 0
  var tlbPageFlushes: UInt64 = 0
  var pageWalks: UInt64 = 0
  var pageWalkRefs: UInt64 = 0
  /// Instruction starts whose fetch missed the TLB.
  var fetchTLBMisses: UInt64 = 0
  var decodeHits: UInt64 = 0
  var decodeMisses: UInt64 = 0
  /// Instructions run through the full decoder (not a cached form).
  var decodeUncached: UInt64 = 0
  var exceptions: UInt64 = 0
  var externalInterrupts: UInt64 = 0
  var pageFaults: UInt64 = 0
  var cr3Loads: UInt64 = 0
  var invlpg: UInt64 = 0
  var pauseYields: UInt64 = 0
  /// Rare exits by name (the MMU modes' own exits).
  var exits = [String: UInt64]()
  /// Exits by kind, counted without hashing a name on every exit (`exitNames`).
  var exitCounts = [UInt64](repeating: 0, count: 9)
  static let exitNames = [
    "exits.io", "exits.mmio", "exits.halt", "exits.shutdown", "exits.hypercall",
    "exits.internal_error", "exits.instruction_limit",
    "host_kicks",  // the VMM's own kicks, not guest exits
    "exits.debug",
  ]

  mutating func countExit(_ e: VMExit) {
    let i: Int
    switch e {
    case .portIO: i = 0
    case .mmio: i = 1
    case .halt: i = 2
    case .shutdown: i = 3
    case .hypercall: i = 4
    case .internalError: i = 5
    case .instructionLimit: i = 6
    case .interrupted: i = 7
    case .debug: i = 8
    }
    exitCounts[i] &+= 1
  }

  func dictionary(instructions: UInt64) -> [String: UInt64] {
    var d: [String: UInt64] = [
      "instructions": instructions,
      "tlb.hits": tlbHits, "tlb.misses": tlbMisses, "tlb.flushes": tlbFlushes,
      "tlb.page_flushes": tlbPageFlushes,
      "mmu.page_walks": pageWalks, "mmu.page_walk_refs": pageWalkRefs,
      "fetch.tlb_misses": fetchTLBMisses, "decode.cache_hits": decodeHits,
      "decode.cache_misses": decodeMisses, "decode.uncached": decodeUncached,
      "exceptions": exceptions, "interrupts.external": externalInterrupts,
      "exceptions.page_faults": pageFaults, "mmu.cr3_loads": cr3Loads, "mmu.invlpg": invlpg,
      "pause_yields": pauseYields,
    ]
    var total: UInt64 = 0
    var named = exits
    for (k, v) in zip(Self.exitNames, exitCounts) where v != 0 { named[k, default: 0] &+= v }
    for (k, v) in named {
      d[k] = v
      if k.hasPrefix("exits.") { total &+= v }
    }
    d["exits.total"] = total
    return d
  }
}
