/// The one check of a whole machine configuration, made before any guest
/// memory is allocated. Every subcommand and `Machine.init` go through it, so
/// a value the user typed can neither trap the host nor be silently ignored.
extension MachineConfig {
  /// Most vCPUs the platform builds (the software engines; KVM takes one so far).
  public static let maxCPUs = 8
  /// Longest wall-clock watchdog: a year (DispatchTime arithmetic must not overflow).
  public static let maxTimeoutSeconds: Double = 365 * 86_400
  /// Largest instruction watchdog (far beyond any run; keeps counter arithmetic in range).
  public static let maxInstructionLimit: UInt64 = 1 << 60
  /// Largest shadow-page cap: 1 Mi pages = 4 GiB of shadow tables.
  public static let maxShadowPageCap = 1 << 20

  /// Refuses contradictory or out-of-range settings with a message naming the option.
  /// `hostMemory` bounds guest RAM plus the VMM's own tables (shadow pages count).
  public func validate(hostMemory: UInt64 = MemorySize.hostPhysicalMemory()) throws {
    func refuse(_ s: String) -> MachineError { .invalidConfig(s) }
    guard cpus >= 1 else { throw refuse("--cpus \(cpus): must be at least 1") }
    guard cpus <= MachineConfig.maxCPUs else {
      throw refuse("--cpus \(cpus): at most \(MachineConfig.maxCPUs) vCPUs are supported")
    }
    if cpus > 1 {
      guard engine.interpretsInstructions else {
        throw refuse(
          "--cpus \(cpus): the KVM engine runs one vCPU so far (it has no interrupt controller for IPIs); use --engine interpreter"
        )
      }
      guard (mmuMode ?? .direct) == .direct else {
        throw refuse(
          "--cpus \(cpus) with --mmu \((mmuMode ?? .direct).name): the nested, shadow and paravirtual MMUs keep one vCPU's state; SMP runs with --mmu direct"
        )
      }
    }
    if let t = timeout {
      guard t.isFinite, t > 0 else {
        throw refuse("--timeout \(t): must be a positive number of seconds")
      }
      guard t <= MachineConfig.maxTimeoutSeconds else {
        throw refuse("--timeout \(t): at most \(Int(MachineConfig.maxTimeoutSeconds)) seconds")
      }
    }
    if let n = maxInstructions {
      guard engine.interpretsInstructions else {
        throw refuse(
          "--max-instructions needs a software engine (interpreter or translator): KVM does not count guest instructions; use --timeout"
        )
      }
      guard n > 0 else { throw refuse("--max-instructions 0: must be at least 1") }
      guard n <= MachineConfig.maxInstructionLimit else {
        throw refuse("--max-instructions \(n): at most \(MachineConfig.maxInstructionLimit)")
      }
    }
    guard !deterministic || engine.interpretsInstructions else {
      throw refuse(
        "--deterministic needs a software engine (interpreter or translator): KVM's guest time follows the host"
      )
    }
    guard !translatorLockstep || engine == .translator else {
      throw refuse("--lockstep needs --engine translator")
    }
    if engine == .kvm, let m = mmuMode, m != .nested {
      throw refuse(
        "--mmu \(m.name) needs the interpreter: with KVM the hardware does nested paging (EPT/NPT) and the VMM cannot \(m == .shadow ? "shadow" : m == .paravirt ? "offer PV page tables to" : "walk guest tables directly for") the guest; use --mmu nested or --engine interpreter"
      )
    }
    let mode = engine.interpretsInstructions ? (mmuMode ?? .direct) : .nested
    if let cap = shadowPageCap {
      guard engine.interpretsInstructions, mode == .shadow else {
        throw refuse("--shadow-cap applies only to --mmu shadow (this run uses \(mode.name))")
      }
      guard cap >= 1, cap <= MachineConfig.maxShadowPageCap else {
        throw refuse("--shadow-cap \(cap): must be between 1 and \(MachineConfig.maxShadowPageCap)")
      }
    }
    if nestedWalkCache, !engine.interpretsInstructions || mode != .nested {
      throw refuse(
        "--nested-walk-cache applies only to --mmu nested on the interpreter (this run uses \(mode.name)\(engine == .kvm ? " on KVM" : ""))"
      )
    }
    guard memorySize >= MemorySize.minimum else {
      throw refuse(MemorySize.ParseError.tooSmall(memorySize).description)
    }
    guard memorySize % 4096 == 0 else {
      throw refuse(MemorySize.ParseError.notPageMultiple(memorySize).description)
    }
    // Guest RAM plus the VMM's page-table frames must fit in the host.
    let extra =
      engine.interpretsInstructions
      ? MMUVirtualization.extraFrames(
        mode: mode, memorySize: memorySize, shadowCap: effectiveShadowPageCap) * 4096 : 0
    let (total, overflow) = memorySize.addingReportingOverflow(extra)
    guard !overflow, total <= hostMemory else {
      throw refuse(
        "guest memory \(memorySize >> 20) MiB\(extra > 0 ? " plus \(extra >> 20) MiB of \(mode.name) tables" : "") is larger than this host's \(hostMemory >> 20) MiB of physical memory"
      )
    }
  }
}
