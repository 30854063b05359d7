import Engine
import Memory
import X86

// The "hardware" half of memory virtualization. The interpreter plays the CPU:
// it walks whatever tables the VMM points it at (nested root, shadow root),
// reports exits, and checks the VMM's write-protect map on TLB write fills.
// The policy (what to map, when to protect, how to validate) lives in
// Sources/VMM/MMU. Nothing here runs in the TLB fast path.

/// What the CPU hands the VMM's `SoftwareMMUHooks` (the events a VMCS would exit for).
enum MMUEvent: Equatable {
  case nestedFault(gpa: UInt64, write: Bool, fetch: Bool)
  case miss(gva: UInt64, write: Bool, user: Bool, fetch: Bool)
  case writeProtected(gva: UInt64, gpa: UInt64, size: Int, value: UInt64)
  case cr3Load(UInt64)
  case invlpg(UInt64)
}

/// MMU-mode state of one CPU: what the VMM programmed (roots, maps) plus counters.
final class MMUHardwareState {
  /// HPA of the nested PML4 (the EPTP / nCR3).
  var nestedRoot: UInt64 = 0
  /// HPA of the shadow PML4 the VMM installed for the current guest context (0 = none yet).
  var shadowRoot: UInt64 = 0
  var frameFlags: UnsafeMutablePointer<UInt8>?
  var frameFlagCount: UInt64 = 0
  /// Host frame -> guest frame + 1 (0 = not guest RAM). Shadow hardware only
  /// sees HPAs; this lets a write-protect exit name the GPA.
  var m2p: UnsafeMutablePointer<UInt32>?
  var m2pCount: UInt64 = 0
  /// Host pointer of the byte the last `translateAccess` resolved (nil: MMIO or intercepted).
  var physHost: UnsafeMutableRawPointer?
  /// The last translated store hit a write-protected frame (shadow): hand it to the VMM.
  var storeTrapped = false
  var stores: [InterceptedStore] = []
  /// Paravirt: strict mode (every CR3 must be a pinned level-4 table).
  var pvStrict = false
  /// Something for `deliverMMUEvents` to do at the next `run()`.
  var eventPending = false
  var injected: (vector: UInt16, code: UInt32, hasCode: Bool, cr2: UInt64?)?
  /// An external interrupt whose delivery was cut short by an MMU exit.
  var redeliver: UInt16?
  var injecting = false

  // Counters.
  var nestedWalks: UInt64 = 0
  var nestedRefs: UInt64 = 0
  var nestedCacheHits: UInt64 = 0
  var shadowRefs: UInt64 = 0
  var storeTraps: UInt64 = 0
  var pvWriteFaults: UInt64 = 0

  /// Optional nested-dimension walk cache: GPA page -> HPA page (direct mapped).
  var nestedCacheEnabled = false
  static let nestedCacheSize = 64
  var ncTag = [UInt64](repeating: ~0, count: nestedCacheSize)
  var ncHPA = [UInt64](repeating: 0, count: nestedCacheSize)

  @inline(__always) func flags(_ gfn: UInt64) -> UInt8 {
    guard let f = frameFlags, gfn < frameFlagCount else { return 0 }
    return f[Int(gfn)]
  }
}

// MARK: Hypervisor-facing API (what a VMCS / VMCB would hold)

extension InterpreterCPU {
  /// Every interpreter vCPU virtualizes memory in software.
  public var softwareMMU: SoftwareMMUHardware? { self }
  public var mmuMode: MMUMode { options.mmuMode }

  /// Nested mode: the root HPA of the VMM's nested table (like loading an EPTP).
  public func setNestedRoot(_ hpa: UInt64) {
    mmuHW.nestedRoot = hpa
    for i in 0..<MMUHardwareState.nestedCacheSize { mmuHW.ncTag[i] = ~0 }
    flushTLB(keepGlobal: false)
  }

  /// Turns the nested-dimension walk cache on or off (nested mode only).
  public func setNestedWalkCache(_ on: Bool) { mmuHW.nestedCacheEnabled = on }

  /// Drops nested-walk-cache entries (the VMM changed a nested entry).
  public func invalidateNestedCache() {
    for i in 0..<MMUHardwareState.nestedCacheSize { mmuHW.ncTag[i] = ~0 }
  }

  /// Shadow mode: the shadow PML4 for the current guest context (the real CR3).
  public func setShadowRoot(_ hpa: UInt64) {
    if hpa != mmuHW.shadowRoot {
      mmuHW.shadowRoot = hpa
      flushTLB(keepGlobal: true)
    }
  }
  public var shadowRoot: UInt64 { mmuHW.shadowRoot }

  /// The VMM's per-guest-frame flags (write protection, PV pin level); `count` frames.
  public func attachFrameFlags(_ p: UnsafeMutablePointer<UInt8>, count: UInt64) {
    mmuHW.frameFlags = p
    mmuHW.frameFlagCount = count
  }

  /// Host frame -> guest frame + 1, for shadow mode's write-protect exits.
  public func attachM2P(_ p: UnsafeMutablePointer<UInt32>, count: UInt64) {
    mmuHW.m2p = p
    mmuHW.m2pCount = count
  }

  public var pagingRegisters: PagingRegisters {
    PagingRegisters(cr0: cr0, cr3: cr3, cr4: cr4, efer: efer)
  }
  public var currentPrivilegeLevel: Int { cpl }
  public var isIn64BitMode: Bool { mode64 }

  /// Sets a general register (0 = RAX ... 15 = R15); for hypercall results.
  public func setGeneralRegister(_ i: Int, _ v: UInt64) { r[i & 15] = v }
  public func generalRegister(_ i: Int) -> UInt64 { r[i & 15] }

  /// Drops cached translations. The VMM calls it after write-protecting frames.
  public func flushTranslations(includingGlobal: Bool) {
    let saved = (pendingExit, pendingMMU)
    flushTLB(keepGlobal: !includingGlobal)
    (pendingExit, pendingMMU) = saved
  }

  /// Drops cached translations of one linear page (as INVLPG does).
  public func flushTranslation(linear: UInt64) {
    let saved = (pendingExit, pendingMMU)
    flushTLBPage(linear)
    (pendingExit, pendingMMU) = saved
  }

  /// Loads CR3 on behalf of the VMM (paravirt HC_NEW_BASEPTR): same effect as MOV to CR3.
  public func loadCR3(_ value: UInt64) {
    cr3 = value & 0x000F_FFFF_FFFF_F000
    stats.cr3Loads &+= 1
    flushTLB(keepGlobal: true)
  }

  /// Paravirt: from now on MOV CR3 must name a pinned level-4 table and CR0.PG stays set.
  public func setParavirtStrict(_ on: Bool) { mmuHW.pvStrict = on }

  /// The VMM injects a page fault for the instruction that exited (shadow mode):
  /// it is delivered at the start of the next `run()`, with CR2 = address.
  public func injectPageFault(address: UInt64, errorCode: UInt32) {
    stats.pageFaults &+= 1
    mmuHW.injected = (14, errorCode, true, address)
    mmuHW.eventPending = true
  }

  /// Injects any exception (e.g. #GP(0)) at the next `run()`.
  public func injectException(vector: UInt8, errorCode: UInt32?) {
    mmuHW.injected = (UInt16(vector), errorCode ?? 0, errorCode != nil, nil)
    mmuHW.eventPending = true
  }

  /// Stores the CPU held back because they hit write-protected frames (shadow mode).
  /// The VMM performs them; the instruction that made them has completed.
  public func takeInterceptedStores() -> [InterceptedStore] {
    let s = mmuHW.stores
    mmuHW.stores.removeAll(keepingCapacity: true)
    return s
  }

  // MARK: Hooks called from the interpreter core

  /// run(): exceptions the VMM injected, and an external interrupt whose delivery an exit cut short.
  func deliverMMUEvents() -> VMExit? {
    mmuHW.eventPending = false
    stop = false
    if let inj = mmuHW.injected {
      if let a = inj.cr2 { cr2 = a }
      mmuHW.injecting = true
      raise(inj.vector, inj.code, inj.hasCode, external: false)
      mmuHW.injecting = false
      // Delivery itself may exit (its stack not yet mapped): then inject again next time.
      if pendingExit == nil { mmuHW.injected = nil } else { mmuHW.eventPending = true }
    } else if let v = mmuHW.redeliver {
      mmuHW.redeliver = nil
      raise(v, 0, false, external: true)
    }
    stop = false
    if let e = pendingExit {
      pendingExit = nil
      return e
    }
    return nil
  }

  /// Called when an MMU exit interrupts the delivery of an event: external
  /// interrupts are already acknowledged, so they must be delivered again.
  /// Delivery is all-or-nothing, so a retry is exact: an INT n / INT3 re-executes.
  func deliveryInterrupted(vector: UInt16, external: Bool, soft: Bool) {
    guard options.mmuMode != .direct, !mmuHW.injecting else { return }
    if external {
      mmuHW.redeliver = vector
      mmuHW.eventPending = true
    } else if soft {
      rip = startRIP
    }
  }

  /// flushTLB / flushTLBPage hook: shadow mode intercepts CR3 loads, paging-mode
  /// changes and INVLPG; paravirt mode reports CR3 loads and paging enables.
  @inline(__always) func mmuFlushHook(page: UInt64?) {
    switch options.mmuMode {
    case .direct, .nested: return
    case .shadow:
      if let p = page {
        mmuEvent(.invlpg(p))
      } else {
        mmuEvent(.cr3Load(cr3))
      }
    case .paravirt:
      if page == nil && cr0 & CR0.pg != 0 { mmuEvent(.cr3Load(cr3)) }
    }
  }

  /// MOV CR3 hook (before the load): paravirt strict mode only takes pinned level-4 tables.
  @inline(__always) func checkCR3Write(_ value: UInt64) throws(Fault) {
    guard options.mmuMode == .paravirt && mmuHW.pvStrict else { return }
    let gfn = (value & 0x000F_FFFF_FFFF_F000) >> 12
    let level = (mmuHW.flags(gfn) & GuestFrameFlag.pinnedMask) >> GuestFrameFlag.pinnedShift
    if level != 4 || value & 0xFFF != 0 { throw Fault.gp(0) }
  }

  /// MOV CR0 hook: paravirt strict mode cannot turn paging off.
  @inline(__always) func checkCR0Write(_ value: UInt64) throws(Fault) {
    if options.mmuMode == .paravirt && mmuHW.pvStrict && value & CR0.pg == 0 { throw Fault.gp(0) }
  }

  /// writeSlow hook: a store the translation held back (write-protected
  /// page-table frame in shadow mode). The CPU treats it as done; the VMM
  /// performs it before the next instruction.
  func interceptStore(_ lin: UInt64, _ gpa: UInt64, _ size: Int, _ v: UInt64) -> Bool {
    guard mmuHW.storeTrapped else { return false }
    mmuHW.storeTrapped = false
    mmuHW.storeTraps &+= 1
    let s = InterceptedStore(gva: lin, gpa: gpa, size: size, value: v & sizeMask(size))
    mmuHW.stores.append(s)
    if mmuHW.stores.count == 1 {
      mmuEvent(.writeProtected(gva: lin, gpa: gpa, size: size, value: s.value))
    }
    return true
  }

  /// Ends the batch after the current instruction with an event for the VMM's MMU hooks.
  @inline(__always) func mmuEvent(_ e: MMUEvent) {
    pendingMMU = e
    exit(Self.mmuEventMarker)
  }

  /// Stands in `pendingExit` for a pending MMU event, so that every "an exit is
  /// pending" check sees it; `run()` never returns it.
  static let mmuEventMarker = VMExit.interrupted

  /// Hands an MMU event to the VMM's hooks; a message stops the VM.
  func dispatchMMUEvent(_ e: MMUEvent) -> String? {
    switch e {
    case .nestedFault: stats.exits["exits.nested_page_fault", default: 0] &+= 1
    default: stats.exits["exits.shadow_mmu", default: 0] &+= 1
    }
    guard let hooks = mmuHooks else {
      return "MMU event \(e) in \(options.mmuMode.name) mode with no VMM MMU attached"
    }
    switch e {
    case .nestedFault(let gpa, let write, let fetch):
      return hooks.nestedPageFault(gpa: gpa, write: write, fetch: fetch)
    case .miss(let gva, let write, let user, let fetch):
      return hooks.shadowMiss(gva: gva, write: write, user: user, fetch: fetch)
    case .writeProtected(let gva, let gpa, let size, let value):
      return hooks.protectedWrite(gva: gva, gpa: gpa, size: size, value: value)
    case .cr3Load(let cr3):
      return hooks.cr3Loaded(cr3)
    case .invlpg(let gva):
      hooks.invalidatedPage(gva)
      return nil
    }
  }

  /// Stops the VM like a machine check: the walk reached something the VMM refuses.
  func machineCheck(_ why: String) -> Fault {
    pendingExit = .shutdown(reason: why)
    return Fault.exit
  }

  /// Extra counters for `statistics()`.
  func mmuStatistics() -> [String: UInt64] {
    var d: [String: UInt64] = [:]
    switch options.mmuMode {
    case .direct, .paravirt:
      d["mmu.guest_refs"] = stats.pageWalkRefs
    case .nested:
      d["mmu.guest_refs"] = stats.pageWalkRefs
      d["mmu.nested_walks"] = mmuHW.nestedWalks
      d["mmu.nested_refs"] = mmuHW.nestedRefs
      d["mmu.nested_cache_hits"] = mmuHW.nestedCacheHits
    case .shadow:
      d["mmu.guest_refs"] = 0
      d["mmu.shadow_refs"] = mmuHW.shadowRefs
      d["mmu.store_traps"] = mmuHW.storeTraps
    }
    if options.mmuMode == .paravirt { d["mmu.pv_write_faults"] = mmuHW.pvWriteFaults }
    return d
  }
}

extension InterpreterCPU {
  /// The CPUID leaf this CPU reports (the VMM reads feature bits it depends on).
  public func cpuidLeaf(_ leaf: UInt32) -> CPUIDResult { cpuid.lookup(leaf: leaf, subleaf: 0) }
}
