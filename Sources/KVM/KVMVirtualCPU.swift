import CKVM
import Engine
import Memory
import X86

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One KVM vCPU. `run()` enters KVM_RUN and turns each exit into a `VMExit`.
///
/// KVM-PVM notes (measured on the PVM host, no VT-x/AMD-V):
/// - Real mode, 32-bit protected mode and long mode entered directly through
///   KVM_SET_SREGS all run; KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR,
///   KVM_CREATE_IRQCHIP and KVM_SET_CPUID2 are accepted.
/// - PVM emulates REP OUTS one element per exit (count = 1) but REP INS
///   arrives with count > 1; both forms are handled.
/// - Faults are delivered (#DE, #UD, #PF...), and an undeliverable one is a
///   triple fault (KVM_EXIT_SHUTDOWN) in protected and long mode. In real mode
///   PVM ignores the IVT limit, so there is no triple fault: the guest runs on.
/// - Software interrupts are not emulated: INT n / INT3 at CPL 0 end in
///   KVM_EXIT_INTERNAL_ERROR (emulation failure, instruction bytes in the data),
///   at CPL 3 the guest gets #UD. SYSRET raises #GP. VMCALL/VMMCALL never
///   complete: the vCPU spins on them until kicked. The same happens with a
///   plain C VMM, so these are PVM limits, not the engine's.
/// - Each exit costs ~8-9 µs (bench/kvm-exits), in C and Swift alike.
public final class KVMVirtualCPU: VirtualCPU {
  /// What this host's KVM can offer (KVM_GET_SUPPORTED_CPUID), plus the hypervisor
  /// bit: the hypervisor leaves are the VMM's to define.
  public static var implementedFeatures: Set<String> {
    let supported = CPUIDPolicy(entries: KVMHost.probe().supportedCPUID)
    var names = Set(CPUFeature.all.filter { supported.has($0) }.map(\.name))
    names.insert("hypervisor")
    // The local APIC is the VMM's model, not KVM's (no in-kernel irqchip), and KVM
    // does not pass IA32_TSC_DEADLINE or the x2APIC MSRs to user space: a guest
    // told about them would arm a timer nothing fires.
    names.subtract(["tsc_deadline_timer", "x2apic"])
    return names
  }

  public let engineName = "kvm"
  public let id: UInt32
  /// Keeps the VM (and with it guest RAM and the VM fd) alive while the vCPU exists.
  public let vm: KVMVirtualMachine

  let fd: Int32
  /// The shared kvm_run page.
  let runPage: UnsafeMutableRawPointer
  let runSize: Int

  /// The KVM_EXIT_IO being handed out element by element.
  var io = ckvm_io_exit()
  /// Element of `io` returned last, and the next one to return.
  private var ioElement: UInt32 = 0
  var ioNext: UInt32 = 0

  enum Pending { case none, portIn, mmioRead, hypercall }
  /// What `completeIO` / `setHypercallResult` answer.
  var pending = Pending.none

  private var counters = Counters()

  /// The VMM's interrupt controllers (PIC/LAPIC models), when KVM has no
  /// in-kernel irqchip: before each KVM_RUN the pending vector is injected with
  /// KVM_INTERRUPT if the guest can take it, otherwise an interrupt window is
  /// requested (KVM_EXIT_IRQ_WINDOW_OPEN brings us back here when IF opens).
  public var interruptInput: InterruptInput?
  /// The VMM's platform: CR8 is the task-priority class of its local APIC, so
  /// it is loaded into kvm_run before each entry and read back after each exit.
  public var platform: PlatformHooks?
  /// An interrupt was handed to KVM_INTERRUPT and no guest entry has happened
  /// since: KVM holds one injected vector, a second would overwrite it.
  private var injectionQueued = false

  /// Guards `runningThread` so `kick()` never signals a thread that left `run()`.
  private let lock: UnsafeMutablePointer<pthread_mutex_t>
  private var runningThread: pthread_t?
  /// The thread on which SIGUSR1 was last unblocked.
  private var unblockedThread: pthread_t?

  /// Installed once per process: a no-op SIGUSR1 handler without SA_RESTART,
  /// so the signal only makes KVM_RUN return EINTR.
  static let kickSignal: Int32 = SIGUSR1
  static let kickHandlerInstalled: Bool = ckvm_install_kick_handler(SIGUSR1) == 0

  init(vm: KVMVirtualMachine, id: UInt32, fd: Int32, run: UnsafeMutableRawPointer, runSize: Int) {
    self.vm = vm
    self.id = id
    self.fd = fd
    self.runPage = run
    self.runSize = runSize
    lock = .allocate(capacity: 1)
    pthread_mutex_init(lock, nil)
    _ = KVMVirtualCPU.kickHandlerInstalled
  }

  deinit {
    _ = ckvm_unmap_run(runPage, runSize)
    _ = ckvm_close(fd)
    pthread_mutex_destroy(lock)
    lock.deallocate()
  }

  // MARK: CPUID and MSRs

  /// Applies a CPUID policy with KVM_SET_CPUID2. Indexed entries carry
  /// KVM_CPUID_FLAG_SIGNIFCANT_INDEX; the per-CPU fields get this vCPU's APIC ID.
  public func setCPUID(_ policy: CPUIDPolicy) throws {
    let raw: [ckvm_cpuid_entry] = policy.entries.map { e in
      let r = e.result.forCPU(leaf: e.function, apicID: UInt32(id))
      return ckvm_cpuid_entry(
        function: e.function, index: e.index,
        flags: e.indexed ? UInt32(CKVM_CPUID_FLAG_SIGNIFICANT_INDEX) : 0,
        eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx)
    }
    let r = raw.withUnsafeBufferPointer { ckvm_set_cpuid2(fd, $0.baseAddress, UInt32($0.count)) }
    guard r >= 0 else {
      throw kvmFailure(
        "KVM_SET_CPUID2 (\(raw.count) entries)", r,
        hint: -r == EINVAL ? "KVM refuses a different CPUID once the vCPU has run" : nil)
    }
  }

  /// Reads MSRs with KVM_GET_MSRS, in the order given.
  public func readMSRs(_ indices: [UInt32]) throws -> [UInt64] {
    guard !indices.isEmpty else { return [] }
    var values = [UInt64](repeating: 0, count: indices.count)
    let r = indices.withUnsafeBufferPointer { i in
      values.withUnsafeMutableBufferPointer { v in
        ckvm_get_msrs(fd, i.baseAddress, v.baseAddress, UInt32(i.count))
      }
    }
    guard r >= 0 else { throw kvmFailure("KVM_GET_MSRS", r) }
    guard Int(r) == indices.count else {
      throw EngineError.failed("KVM_GET_MSRS: KVM does not know MSR \(hex(indices[Int(r)]))")
    }
    return values
  }

  /// Writes MSRs with KVM_SET_MSRS.
  public func writeMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws {
    guard !msrs.isEmpty else { return }
    let indices = msrs.map(\.index)
    let values = msrs.map(\.value)
    let r = indices.withUnsafeBufferPointer { i in
      values.withUnsafeBufferPointer { v in
        ckvm_set_msrs(fd, i.baseAddress, v.baseAddress, UInt32(i.count))
      }
    }
    guard r >= 0 else { throw kvmFailure("KVM_SET_MSRS", r) }
    guard Int(r) == msrs.count else {
      let m = msrs[Int(r)]
      throw EngineError.failed("KVM_SET_MSRS: KVM refused MSR \(hex(m.index)) = \(hex(m.value))")
    }
  }

  // MARK: Register state

  public func getState() throws -> CPUState {
    var g = ckvm_regs()
    var r = ckvm_get_regs(fd, &g)
    guard r >= 0 else { throw kvmFailure("KVM_GET_REGS", r) }
    var s = ckvm_sregs()
    r = ckvm_get_sregs(fd, &s)
    guard r >= 0 else { throw kvmFailure("KVM_GET_SREGS", r) }
    return CPUState(general: Self.general(from: g), special: Self.special(from: s))
  }

  public func setState(_ state: CPUState) throws {
    // Start from KVM's sregs so the pending-interrupt bitmap survives.
    var s = ckvm_sregs()
    var r = ckvm_get_sregs(fd, &s)
    guard r >= 0 else { throw kvmFailure("KVM_GET_SREGS", r) }
    Self.apply(state.special, to: &s)
    r = ckvm_set_sregs(fd, &s)
    guard r >= 0 else {
      throw kvmFailure(
        "KVM_SET_SREGS", r,
        hint: -r == EINVAL
          ? "KVM refuses inconsistent state (e.g. CS.L outside long mode, EFER.LME with CR0.PG "
            + "but no CR4.PAE, or a CR3 beyond the physical address width)" : nil)
    }
    var g = Self.regs(from: state.general)
    r = ckvm_set_regs(fd, &g)
    guard r >= 0 else { throw kvmFailure("KVM_SET_REGS", r) }
    // New state abandons any half-delivered I/O.
    pending = .none
    ioNext = io.count
  }

  static func general(from g: ckvm_regs) -> GeneralRegisters {
    var r = GeneralRegisters()
    r.rax = g.rax
    r.rbx = g.rbx
    r.rcx = g.rcx
    r.rdx = g.rdx
    r.rsi = g.rsi
    r.rdi = g.rdi
    r.rsp = g.rsp
    r.rbp = g.rbp
    r.r8 = g.r8
    r.r9 = g.r9
    r.r10 = g.r10
    r.r11 = g.r11
    r.r12 = g.r12
    r.r13 = g.r13
    r.r14 = g.r14
    r.r15 = g.r15
    r.rip = g.rip
    r.rflags = g.rflags
    return r
  }

  static func regs(from r: GeneralRegisters) -> ckvm_regs {
    ckvm_regs(
      rax: r.rax, rbx: r.rbx, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, rsp: r.rsp,
      rbp: r.rbp, r8: r.r8, r9: r.r9, r10: r.r10, r11: r.r11, r12: r.r12, r13: r.r13,
      r14: r.r14, r15: r.r15, rip: r.rip, rflags: r.rflags)
  }

  static func segment(from s: ckvm_segment) -> SegmentRegister {
    var r = SegmentRegister(
      selector: s.selector, base: s.base, limit: s.limit, type: s.type & 0xF, s: s.s != 0,
      dpl: s.dpl & 3, present: s.present != 0, l: s.l != 0, db: s.db != 0, g: s.g != 0)
    r.avl = s.avl != 0
    r.unusable = s.unusable != 0
    return r
  }

  static func segment(from r: SegmentRegister) -> ckvm_segment {
    ckvm_segment(
      base: r.base, limit: r.limit, selector: r.selector, type: r.type & 0xF,
      present: r.present ? 1 : 0, dpl: r.dpl & 3, db: r.db ? 1 : 0, s: r.s ? 1 : 0,
      l: r.l ? 1 : 0, g: r.g ? 1 : 0, avl: r.avl ? 1 : 0, unusable: r.unusable ? 1 : 0)
  }

  static func special(from s: ckvm_sregs) -> SpecialRegisters {
    var r = SpecialRegisters()
    r.cs = segment(from: s.cs)
    r.ds = segment(from: s.ds)
    r.es = segment(from: s.es)
    r.fs = segment(from: s.fs)
    r.gs = segment(from: s.gs)
    r.ss = segment(from: s.ss)
    r.tr = segment(from: s.tr)
    r.ldt = segment(from: s.ldt)
    r.gdt = DescriptorTableRegister(base: s.gdt.base, limit: s.gdt.limit)
    r.idt = DescriptorTableRegister(base: s.idt.base, limit: s.idt.limit)
    r.cr0 = s.cr0
    r.cr2 = s.cr2
    r.cr3 = s.cr3
    r.cr4 = s.cr4
    r.cr8 = s.cr8
    r.efer = s.efer
    r.apicBase = s.apic_base
    return r
  }

  /// Writes `r` into `s`, keeping `s.interrupt_bitmap`.
  static func apply(_ r: SpecialRegisters, to s: inout ckvm_sregs) {
    s.cs = segment(from: r.cs)
    s.ds = segment(from: r.ds)
    s.es = segment(from: r.es)
    s.fs = segment(from: r.fs)
    s.gs = segment(from: r.gs)
    s.ss = segment(from: r.ss)
    s.tr = segment(from: r.tr)
    s.ldt = segment(from: r.ldt)
    s.gdt = ckvm_dtable(base: r.gdt.base, limit: r.gdt.limit)
    s.idt = ckvm_dtable(base: r.idt.base, limit: r.idt.limit)
    s.cr0 = r.cr0
    s.cr2 = r.cr2
    s.cr3 = r.cr3
    s.cr4 = r.cr4
    s.cr8 = r.cr8
    // LMA is a status bit the CPU derives from LME and CR0.PG; KVM insists it
    // be consistent, so derive it rather than make every loader compute it.
    if r.efer & EFER.lme != 0 && r.cr0 & CR0.pg != 0 {
      s.efer = r.efer | EFER.lma
    } else {
      s.efer = r.efer & ~EFER.lma
    }
    s.apic_base = r.apicBase
  }

  // MARK: Running

  public func run() throws -> VMExit {
    // Hand out the remaining elements of a string/REP port access first.
    if ioNext < io.count {
      ioElement = ioNext
      ioNext += 1
      counters.ioElements += 1
      return portIOExit()
    }
    while true {
      if let input = interruptInput { injectInterrupts(from: input) }
      if let tpr = platform?.taskPriorityClass { ckvm_run_set_cr8(runPage, UInt64(tpr)) }
      let r = enterKVM()
      if let p = platform, p.taskPriorityClass != nil {
        p.setTaskPriorityClass(UInt8(truncatingIfNeeded: ckvm_run_cr8(runPage) & 0xF))
      }
      if r >= 0 { injectionQueued = false }
      if r < 0 {
        if r == -EINTR {
          return interrupted()
        }
        if r == -EAGAIN { continue }
        counters.internalError += 1
        return .internalError("KVM_RUN failed: \(errnoDescription(-r))")
      }
      switch Int(ckvm_run_exit_reason(runPage)) {
      case Int(CKVM_EXIT_IO):
        counters.io += 1
        ckvm_run_io(runPage, &io)
        let bytes = UInt64(io.size) * UInt64(io.count)
        guard io.size == 1 || io.size == 2 || io.size == 4, io.count >= 1,
          io.data_offset < UInt64(runSize), bytes <= UInt64(runSize) - io.data_offset
        else {
          let bad =
            "KVM_EXIT_IO with size \(io.size), count \(io.count), data offset \(io.data_offset) "
            + "outside the \(runSize)-byte run page"
          io.count = 0
          counters.internalError += 1
          return .internalError(bad)
        }
        ioElement = 0
        ioNext = 1
        counters.ioElements += 1
        return portIOExit()
      case Int(CKVM_EXIT_MMIO):
        counters.mmio += 1
        var m = ckvm_mmio_exit()
        ckvm_run_mmio(runPage, &m)
        let len = Int(min(m.len, 8))
        var value: UInt64 = 0
        if m.is_write != 0 {
          withUnsafeBytes(of: m.data) { d in
            for i in 0..<len { value |= UInt64(d[i]) << (8 * UInt64(i)) }
          }
          pending = .none
        } else {
          pending = .mmioRead
        }
        return .mmio(
          MMIOAccess(
            address: GuestPhysicalAddress(m.phys_addr), size: len, isWrite: m.is_write != 0,
            value: value))
      case Int(CKVM_EXIT_HLT):
        counters.hlt += 1
        pending = .none
        return .halt
      case Int(CKVM_EXIT_SHUTDOWN):
        counters.shutdown += 1
        pending = .none
        return .shutdown(reason: "triple fault")
      case Int(CKVM_EXIT_FAIL_ENTRY):
        counters.failEntry += 1
        pending = .none
        var cpu: UInt32 = 0
        let reason = ckvm_run_fail_entry_reason(runPage, &cpu)
        return .internalError(
          "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason \(hex(reason)) on cpu \(cpu)")
      case Int(CKVM_EXIT_INTERNAL_ERROR):
        counters.internalError += 1
        pending = .none
        return .internalError(internalErrorDescription())
      case Int(CKVM_EXIT_INTR):
        return interrupted()
      case Int(CKVM_EXIT_HYPERCALL):
        counters.hypercall += 1
        var h = ckvm_hypercall_exit()
        ckvm_run_hypercall(runPage, &h)
        pending = .hypercall
        return .hypercall(number: h.nr, arguments: Array([h.args.0, h.args.1, h.args.2, h.args.3]))
      case Int(CKVM_EXIT_SYSTEM_EVENT):
        counters.systemEvent += 1
        pending = .none
        let type = ckvm_run_system_event_type(runPage)
        let names: [UInt32: String] = [1: "shutdown", 2: "reset", 3: "crash"]
        return .shutdown(reason: "KVM system event: \(names[type] ?? "type \(type)")")
      case Int(CKVM_EXIT_IRQ_WINDOW_OPEN):
        // The guest can take an interrupt now: the top of the loop injects it.
        counters.irqWindow += 1
        continue
      default:
        counters.other += 1
        pending = .none
        let reason = ckvm_run_exit_reason(runPage)
        var s = "unhandled KVM exit reason \(reason)"
        if let name = Self.exitNames[reason] { s += " (\(name))" }
        if reason == UInt32(CKVM_EXIT_UNKNOWN) {
          s += ", hardware exit reason \(hex(ckvm_run_hardware_exit_reason(runPage)))"
        }
        return .internalError(s)
      }
    }
  }

  static let exitNames: [UInt32: String] = [
    0: "KVM_EXIT_UNKNOWN", 1: "KVM_EXIT_EXCEPTION", 4: "KVM_EXIT_DEBUG", 11: "KVM_EXIT_SET_TPR",
    12: "KVM_EXIT_TPR_ACCESS", 16: "KVM_EXIT_NMI", 29: "KVM_EXIT_X86_RDMSR",
    30: "KVM_EXIT_X86_WRMSR",
  ]

  /// Injects the pending NMI and external interrupt from the VMM's controllers.
  /// `ready_for_interrupt_injection` and `if_flag` describe the state at the last
  /// exit, which is where the guest resumes.
  private func injectInterrupts(from input: InterruptInput) {
    if input.hasPendingNMI {
      if ckvm_nmi(fd) >= 0 { counters.nmis += 1 }
      input.acknowledgeNMI()
    }
    guard input.hasPendingInterrupt, !injectionQueued else {
      ckvm_run_set_request_interrupt_window(runPage, 0)
      return
    }
    if ckvm_run_ready_for_interrupt_injection(runPage) != 0 && ckvm_run_if_flag(runPage) != 0 {
      // Acknowledge only now: the INTA cycle happens when the CPU takes the vector.
      if let vector = input.acknowledgeInterrupt(), ckvm_interrupt(fd, UInt32(vector)) >= 0 {
        counters.injected += 1
        injectionQueued = true
      }
      ckvm_run_set_request_interrupt_window(runPage, 0)
    } else {
      ckvm_run_set_request_interrupt_window(runPage, 1)
    }
  }

  /// KVM_RUN with this thread published for `kick()`.
  @inline(__always)
  private func enterKVM() -> Int32 {
    let me = pthread_self()
    if !isUnblocked(on: me) {
      // Worker threads (Dispatch) may block SIGUSR1; the kick needs it deliverable.
      _ = ckvm_unblock_signal(KVMVirtualCPU.kickSignal)
      unblockedThread = me
    }
    pthread_mutex_lock(lock)
    runningThread = me
    pthread_mutex_unlock(lock)
    counters.runs += 1
    let r = ckvm_run(fd)
    pthread_mutex_lock(lock)
    runningThread = nil
    pthread_mutex_unlock(lock)
    return r
  }

  @inline(__always)
  private func isUnblocked(on thread: pthread_t) -> Bool {
    guard let t = unblockedThread else { return false }
    return pthread_equal(t, thread) != 0
  }

  private func interrupted() -> VMExit {
    // Consume the kick; a later kick sets it again.
    ckvm_run_set_immediate_exit(runPage, 0)
    counters.interrupted += 1
    return .interrupted
  }

  @inline(__always)
  private func portIOExit() -> VMExit {
    let size = Int(io.size)
    if io.direction == 0 {
      pending = .portIn
      return .portIO(PortIOAccess(port: io.port, size: size, direction: .in))
    }
    pending = .none
    let p = runPage + Int(io.data_offset) + Int(ioElement) * size
    let value: UInt32
    switch size {
    case 1: value = UInt32(p.load(as: UInt8.self))
    case 2: value = UInt32(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
    default: value = UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))
    }
    return .portIO(PortIOAccess(port: io.port, size: size, direction: .out, value: value))
  }

  private func internalErrorDescription() -> String {
    var e = ckvm_internal_exit()
    ckvm_run_internal(runPage, &e)
    let names: [UInt32: String] = [
      1: "emulation failure", 2: "exception while delivering an exception",
      3: "event delivery failure", 4: "unexpected exit reason",
    ]
    var s = "KVM_EXIT_INTERNAL_ERROR: suberror \(e.suberror)"
    if let n = names[e.suberror] { s += " (\(n))" }
    let n = Int(min(e.ndata, 16))
    if n > 0 {
      let data = withUnsafeBytes(of: e.data) { Array($0.bindMemory(to: UInt64.self).prefix(n)) }
      s += ", data " + data.map { hex($0) }.joined(separator: " ")
    }
    if let state = try? getState() {
      s += ", rip \(hex(state.general.rip)), cs \(hex(state.special.cs.selector))"
    }
    return s
  }

  public func completeIO(value: UInt64) {
    switch pending {
    case .portIn:
      let size = Int(io.size)
      let p = runPage + Int(io.data_offset) + Int(ioElement) * size
      switch size {
      case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
      case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: value).littleEndian, as: UInt16.self)
      default: p.storeBytes(of: UInt32(truncatingIfNeeded: value).littleEndian, as: UInt32.self)
      }
    case .mmioRead:
      ckvm_run_set_mmio_data(runPage, value)
    case .none, .hypercall:
      break
    }
    if pending != .hypercall { pending = .none }
  }

  public func setHypercallResult(_ value: UInt64) {
    if pending == .hypercall {
      ckvm_run_set_hypercall_ret(runPage, value)
      pending = .none
    }
  }

  /// Exceptions happen inside KVM, which keeps no history of them.
  public var lastException: ExceptionRecord? { nil }

  /// Thread-safe: sets immediate_exit, and signals the vCPU thread if it is in KVM_RUN.
  public func kick() {
    pthread_mutex_lock(lock)
    ckvm_run_set_immediate_exit(runPage, 1)
    if let t = runningThread, KVMVirtualCPU.kickHandlerInstalled {
      pthread_kill(t, KVMVirtualCPU.kickSignal)
    }
    pthread_mutex_unlock(lock)
  }

  // MARK: Statistics

  private struct Counters {
    var runs: UInt64 = 0
    var io: UInt64 = 0
    var ioElements: UInt64 = 0
    var mmio: UInt64 = 0
    var hlt: UInt64 = 0
    var shutdown: UInt64 = 0
    var failEntry: UInt64 = 0
    var internalError: UInt64 = 0
    var interrupted: UInt64 = 0
    var hypercall: UInt64 = 0
    var systemEvent: UInt64 = 0
    var other: UInt64 = 0
    var irqWindow: UInt64 = 0
    var injected: UInt64 = 0
    var nmis: UInt64 = 0
  }

  /// Exit counts by reason, named as the interpreter names them (docs/STATS.md).
  /// `exits.io` counts KVM_EXIT_IO, `exits.io_elements` the `.portIO` exits handed
  /// out (more with REP INS/OUTS); `kvm.runs` the KVM_RUN calls; `host_kicks` the
  /// KVM_EXIT_INTR returns from the VMM's own kicks, which are not guest exits.
  public func statistics() -> [String: UInt64] {
    let c = counters
    return [
      "kvm.runs": c.runs,
      "exits.io": c.io,
      "exits.io_elements": c.ioElements,
      "exits.mmio": c.mmio,
      "exits.halt": c.hlt,
      "exits.shutdown": c.shutdown,
      "exits.fail_entry": c.failEntry,
      "exits.internal_error": c.internalError,
      "host_kicks": c.interrupted,
      "exits.hypercall": c.hypercall,
      "exits.system_event": c.systemEvent,
      "exits.other": c.other,
      "exits.irq_window": c.irqWindow,
      "kvm.interrupts_injected": c.injected,
      "kvm.nmis_injected": c.nmis,
      "exits.total": c.io + c.mmio + c.hlt + c.shutdown + c.failEntry + c.internalError
        + c.hypercall + c.systemEvent + c.other + c.irqWindow,
    ]
  }
}
