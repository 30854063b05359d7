import Boot
import Devices
import Engine
import Foundation
import Logging
import Memory
import Synchronization
import X86

/// One virtual machine: guest RAM, buses, devices and its vCPUs, assembled from
/// a `MachineConfig`. `run()` is the VMM's run loop: it runs the vCPUs in turn
/// (`VCPUScheduler`), hands each exit to a bus, and feeds the device's answer back.
public final class Machine {
  public let config: MachineConfig
  public let memory: GuestMemory
  public let portBus: PortIOBus
  public let mmioBus: MMIOBus
  public let control = MachineControl()
  public let uart: UART16550
  /// The i8042 and its keyboard (SendCtrlAltDel presses keys on it).
  public let i8042: I8042Device
  /// The boot CPU (`cpus[0]`).
  public let cpu: VirtualCPU
  /// Every vCPU; index = APIC ID.
  public let cpus: [VirtualCPU]
  let scheduler: VCPUScheduler
  public let boot: BootImage
  private let engine: EngineInstance
  /// The PC platform devices every engine sees.
  let platform: PCPlatform?
  /// Ports, IRQs and windows; the ACPI tables and bus registration come from it.
  public let layout: PlatformLayout
  /// PCI slots, BARs, IRQs and MSI-X vectors.
  public let devices: DeviceManager?
  /// virtio-pci devices from `config.virtio` (see VirtioSetup.swift).
  public let virtio: VirtioDevices?
  private let console: ConsoleOutput
  let logger: Logger
  /// Host I/O: the deadline timer now, disk and network back-ends later.
  public let hostLoop: HostEventLoop
  /// A halted vCPU sleeps on this until an interrupt source or the host needs it.
  private let doorbell: Doorbell
  /// Memory virtualization (interpreter engine), nil for KVM.
  public let mmu: MMUVirtualization?
  /// Every hypercall goes through here (the PV MMU registers its numbers).
  public let hypercalls = HypercallTable()
  /// Pause and run-on-the-vCPU-thread requests (MachinePause.swift).
  let requests = VCPUThreadRequests()
  /// Debug stops reported by the engine, for a debugger (MachineDebug.swift).
  let debugStops = MachineDebugStops()

  // Requests from other threads (signals, console input, watchdog). The
  // flag lets the run loop skip the lock on every exit when nothing is pending.
  // The condition wakes a console reader waiting for room in `pendingInput`.
  private let lock = NSCondition()
  private let hostAttention = Atomic<Bool>(false)
  /// vCPUs (bit i: vCPU i) a host thread kicked (input, a request, a stop) that have
  /// not returned for it yet: under `--deterministic` the turn a kick cut short is
  /// resumed, so host timing never changes the interleaving. Per vCPU, because each
  /// holds its own kick until its next run.
  private let hostKicked = Atomic<UInt64>(0)
  private var hostStop: MachineOutcome?
  private var pendingInput: [UInt8] = []
  /// Set when the run loop returned: nothing will take input any more.
  private var finished = false
  /// vCPU thread only: input is waiting for the UART to have room.
  private var inputStalled = false
  /// Console input held between the reader thread and the UART. A reader that
  /// finds it full waits (back-pressure), so typed bytes are never dropped and
  /// memory stays bounded whatever the guest does.
  public static let inputQueueLimit = 4096
  /// Whether console input may still arrive (a reader is attached and not at EOF).
  private var inputOpen = false

  /// VMM-side exit counters, by reason.
  private struct ExitCounters {
    var io: UInt64 = 0
    var mmio: UInt64 = 0
    var halt: UInt64 = 0
    var shutdown: UInt64 = 0
    var hypercall: UInt64 = 0
    var internalError: UInt64 = 0
    var interrupted: UInt64 = 0
  }
  private var exits = ExitCounters()
  public private(set) var wallSeconds: Double = 0
  /// With instruction-count time: `run()` stops exactly after this many retired
  /// instructions (`--snapshot-at`), between exits, so the machine can be saved.
  public var stopAtInstruction: UInt64?

  public init(
    config: MachineConfig, console: ConsoleOutput, logger: Logger = Logger(label: "swiftvmm")
  )
    throws
  {
    try config.validate()
    self.config = config
    self.console = console
    self.logger = logger
    hostLoop = try HostEventLoop()
    doorbell = try Doorbell()
    memory = try Machine.makeMemory(config)
    portBus = PortIOBus(logger: logger)
    mmioBus = MMIOBus(logger: logger)

    let layout = PlatformLayout()
    self.layout = layout
    try portBus.register(
      DebugExitDevice(control: control), ports: layout.debugExitPorts, name: "isa-debug-exit")
    let kbc = I8042Device(control: control)
    i8042 = kbc
    let kbcData = layout.i8042DataPort
    let kbcCommand = layout.i8042CommandPort
    try portBus.register(kbc, ports: kbcData...kbcData, name: "i8042 data")
    try portBus.register(
      kbc, ports: kbcCommand...kbcCommand, name: "i8042 command", firstOffset: kbcCommand - kbcData)
    let acpi = layout.acpi(cpuCount: config.cpus)

    // Load before creating the engine, so bad images are reported the same on every engine.
    let isLinux = LinuxBoot.isLinuxKernel(config.kernel)
    if isLinux, let why = KVMPlatformLimits.linuxRefusal(engine: config.engine) {
      throw MachineError.invalidConfig(why)
    }
    if isLinux {
      guard config.modules.isEmpty else {
        throw BootError.unsupported("--module is for multiboot kernels; Linux takes one --initrd")
      }
      boot = try LinuxBoot.load(
        config.kernel, commandLine: config.commandLine, initrd: config.initrd, acpi: acpi,
        protocol: config.linuxProtocol, into: memory
      ).image
    } else {
      var modules: [MultibootLoader.Module] = []
      if let initrd = config.initrd { modules.append(.init(bytes: initrd, name: "initrd")) }
      modules += config.modules
      boot = try KernelLoader.load(
        config.kernel, commandLine: "\(config.kernelName) \(config.commandLine)",
        modules: modules, acpi: acpi, into: memory)
    }
    // Every engine sees this platform (KVM injects its interrupts with KVM_INTERRUPT).
    do {
      let clock: GuestClock = config.deterministic ? InstructionClock() : HostMonotonicClock()
      let p = try PCPlatform(
        memory: memory, portBus: portBus, mmioBus: mmioBus, clock: clock, cpuCount: config.cpus,
        layout: layout,
        wallClockAtBoot: config.deterministic
          ? MachineConfig.deterministicEpoch : hostWallClockSeconds())
      let pci = PCIHost(mmioBus: mmioBus, logger: logger)
      try pci.register(on: portBus, ports: layout.pciConfigPorts)
      if boot.firmwareTables != nil {
        try ACPIPowerManagement(control: control, clock: p.clock, s5SleepType: acpi.s5SleepType)
          .register(on: portBus, base: acpi.pmBase)
      }
      if !isLinux { p.pic.programAsFirmwareLeavesIt() }  // no BIOS ran: do what it would
      try p.registerHypercalls(in: hypercalls)
      platform = p
      devices = DeviceManager(
        layout: layout, pciHost: pci, interruptLines: p.irqs, msiDelivery: p)
      try devices?.claimIRQ(Int(layout.com1IRQ), for: "uart0")
      try devices?.claimIRQ(Int(layout.i8042IRQ), for: "i8042")
      try devices?.claimIRQ(Int(layout.rtcIRQ), for: "CMOS RTC")
      try devices?.claimIRQ(Int(layout.sciIRQ), for: "ACPI SCI")
    }
    virtio = try VirtioDevices.attach(
      config.virtio, memory: memory, manager: devices,
      output: { [console] bytes in for b in bytes { console.write(b) } }, logger: logger)
    engine = try EngineFactory.make(config: config, memory: memory, platform: platform)
    cpu = engine.cpu
    cpus = engine.cpus
    scheduler = VCPUScheduler(engine: engine, platform: platform, logger: logger)
    if let hw = cpu.softwareMMU {
      let has1G = hw.cpuidLeaf(0x8000_0001).edx & (1 << 26) != 0
      let m = try MMUVirtualization(
        cpu: hw, memory: memory, has1G: has1G, shadowCap: config.effectiveShadowPageCap,
        nestedWalkCache: config.nestedWalkCache)
      try m.registerHypercalls(in: hypercalls)
      mmu = m
    } else {
      mmu = nil
    }

    uart = UART16550(irq: IRQLine(Int(layout.com1IRQ), lines: engine.interruptLines)) {
      [console] b in console.write(b)
    }
    try portBus.register(uart, ports: layout.com1Ports, name: "uart0 (16550A)")
    kbc.irq = IRQLine(Int(layout.i8042IRQ), lines: engine.interruptLines)
    if config.qemuCompat {
      try registerQEMUTestInterfaces(layout: layout, lines: engine.interruptLines)
    }
    try cpu.setState(boot.initialState)
    // Frames from the network back-end's thread wake the vCPU like console input.
    virtio?.networkBackend?.onReceive = { [weak self] in self?.noteHostWork() }
    logger.info(
      "loaded \(config.kernelName) as \(boot.format.rawValue), entry 0x\(String(boot.initialState.general.rip, radix: 16)), engine \(cpu.engineName)"
    )
  }

  // MARK: Thread-safe requests

  /// Stops the VM from another thread (Ctrl-C, watchdog).
  public func requestStop(_ outcome: MachineOutcome) {
    lock.lock()
    if hostStop == nil { hostStop = outcome }
    lock.broadcast()
    lock.unlock()
    requests.wakeParked()
    hostAttention.store(true, ordering: .releasing)
    kickCPUs()
    doorbell.ring()
  }

  /// Console input from the host, delivered to the UART by the run loop.
  /// Blocks while the input queue is full (the guest is not reading), and
  /// returns the bytes it could not deliver because the VM stopped.
  @discardableResult
  public func feedInput(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
    var rest = bytes[...]
    lock.lock()
    defer { lock.unlock() }
    inputOpen = true
    while !rest.isEmpty {
      while pendingInput.count >= Machine.inputQueueLimit && hostStop == nil && !finished {
        lock.wait()
      }
      if hostStop != nil || finished { break }
      let n = min(Machine.inputQueueLimit - pendingInput.count, rest.count)
      pendingInput += rest.prefix(n)
      rest = rest.dropFirst(n)
      hostAttention.store(true, ordering: .releasing)
      kickCPUs()
      doorbell.ring()
    }
    return rest
  }

  /// Thread-safe: whichever vCPU is running returns to the run loop soon.
  private func kickCPUs() {
    hostKicked.store(cpus.count >= 64 ? ~0 : (1 << UInt64(cpus.count)) - 1, ordering: .releasing)
    for c in cpus { c.kick() }
  }

  /// Another thread has work for the run loop (frames from a back-end, a pause or a
  /// request): it takes it at its next check.
  func noteHostWork() {
    hostAttention.store(true, ordering: .releasing)
    kickCPUs()
    doorbell.ring()
  }

  /// Says whether console input can still arrive: a halted guest waiting only
  /// for input is not hung while a reader is attached.
  public func setInputOpen(_ open: Bool) {
    lock.lock()
    inputOpen = open
    lock.unlock()
    hostAttention.store(true, ordering: .releasing)
    kickCPUs()
    doorbell.ring()
  }

  // MARK: Run loop

  public func run() -> MachineOutcome {
    let start = DispatchTime.now().uptimeNanoseconds
    requests.started()
    defer {
      console.flush()
      wallSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      lock.lock()
      finished = true
      lock.broadcast()
      lock.unlock()
      requests.finished()
    }
    if let t = config.timeout {
      DispatchQueue.global().asyncAfter(deadline: .now() + t) { [weak self] in
        self?.requestStop(.watchdog("guest did not finish within \(t) s (--timeout)"))
      }
    }
    // Host time: the event loop's timerfd kicks the vCPU at device deadlines.
    // Instruction-count time: the vCPU pauses at the deadline's instruction count instead.
    if let platform, let clock = platform.clock as? HostMonotonicClock {
      let loop = hostLoop
      let cpus = self.cpus
      loop.setTimerHandler { for c in cpus { c.kick() } }
      platform.onDeadlineChange = { d in
        loop.armTimer(
          atMonotonicNanoseconds: d == .max ? 0 : clock.monotonicNanoseconds(atGuest: d))
      }
      if let d = platform.earliestDeadline {
        loop.armTimer(atMonotonicNanoseconds: clock.monotonicNanoseconds(atGuest: d))
      }
    }
    hostLoop.start()
    // Output waiting in the console buffer is shown within 10 ms: a kick makes the vCPU
    // leave guest code, and that exit flushes.
    // (The cycle through `console` is broken when run() returns.) Not under
    // --deterministic: a kick at a host-time moment must not touch the schedule there.
    if !config.deterministic {
      console.onPending = {
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(10)) { [weak self] in
          self?.kickCPUs()
        }
      }
    }
    defer {
      hostLoop.stop()
      platform?.onDeadlineChange = nil
      console.onPending = nil
    }
    // Held in locals for the loop: read from `self` on every exit, each cost a retain
    // and a release (and the clock a dynamic cast).
    let cpus = self.cpus
    let scheduler = self.scheduler
    let platform = self.platform
    let instructionClock = platform?.clock as? InstructionClock
    while true {
      if let o = takeHostEvents() { return o }
      if inputStalled && consoleRoom > 0 { moveInputToConsole() }
      guard let i = scheduler.next() else {
        // Every vCPU is halted (or waiting for a start-up IPI).
        if let o = haltOutcome() { return o }
        continue
      }
      scheduler.pace(
        clock: instructionClock, deadline: platform?.earliestDeadline, stopAt: stopAtInstruction)
      let cpu = cpus[i]
      let exit: VMExit
      do {
        exit = try cpu.run()
      } catch {
        return .guestFailure("\(error)")
      }
      if case .interrupted = exit, config.deterministic,
        hostKicked.bitwiseAnd(~(1 << UInt64(i)), ordering: .acquiringAndReleasing).oldValue
          & (1 << UInt64(i)) != 0
      {
        // A PAUSE that coincided with the kick ends the resumed turn again at once:
        // the engine still holds the kick and returns before running anything.
        scheduler.resumeAfterHostKick()
      }
      if let o = handle(exit, cpu: cpu) { return o }
      if let r = control.stopRequest { return outcome(for: r) }
      platform?.poll()
      if let n = stopAtInstruction, instructionsRetired >= n {
        scheduler.resumeQuantum = true
        return .instructionStop(n)
      }
    }
  }

  private func handle(_ exit: VMExit, cpu: VirtualCPU) -> MachineOutcome? {
    switch exit {
    case .portIO(let a):
      exits.io += 1
      if a.direction == .in {
        cpu.completeIO(value: UInt64(portBus.read(port: a.port, size: a.size)))
      } else {
        portBus.write(port: a.port, size: a.size, value: a.value)
      }
    case .mmio(let a):
      exits.mmio += 1
      if a.isWrite {
        mmioBus.write(address: a.address.rawValue, size: a.size, value: a.value)
      } else {
        cpu.completeIO(value: mmioBus.read(address: a.address.rawValue, size: a.size))
      }
    case .halt:
      exits.halt += 1
      console.flush()
      let flags = (try? cpu.getState().general.rflags) ?? 0
      scheduler.halted(interruptsEnabled: flags & RFLAGS.if != 0)
    case .shutdown(let reason):
      exits.shutdown += 1
      return .guestFailure(reason)
    case .hypercall(let nr, let args):
      exits.hypercall += 1
      cpu.setHypercallResult(hypercalls.call(number: nr, arguments: args))
    case .internalError(let s):
      exits.internalError += 1
      return .guestFailure("engine error: \(s)")
    case .instructionLimit(let n):
      return .watchdog("instruction limit of \(n) reached (--max-instructions)")
    case .interrupted:
      exits.interrupted += 1
      console.flush()
    case .debug(let stop):
      console.flush()
      debugStopped(stop)
    }
    return nil
  }

  /// Halted vCPUs with nothing that can wake them are a hung guest: say so.
  private func haltOutcome() -> MachineOutcome? {
    if scheduler.allHaltedWithInterruptsDisabled {
      return .guestFailure(
        cpus.count == 1
          ? "vCPU halted with interrupts disabled; it can never resume"
          : "every vCPU halted with interrupts disabled; none can resume")
    }
    guard let platform, engine.interruptsCanWake else {
      return .guestFailure(
        "vCPU halted waiting for an interrupt, but no interrupt controller is attached")
    }
    return waitForInterrupt(platform)
  }

  /// Sleeps until a timer fires an interrupt, console input arrives, or the
  /// host stops the VM. Fails when nothing could ever wake the vCPU.
  private func waitForInterrupt(_ platform: PCPlatform) -> MachineOutcome? {
    while true {
      platform.poll()
      if scheduler.anyWakeable { return nil }
      lock.lock()
      let stop = hostStop
      let hasInput = !pendingInput.isEmpty && consoleRoom > 0
      let inputOpen = inputOpen
      lock.unlock()
      if let stop { return stop }
      if hasInput || hostAttention.load(ordering: .acquiring) {
        // Deliver it and let the UART (or virtio) decide whether that raises an interrupt.
        moveInputToConsole()
        _ = takeHostEvents()
        if scheduler.anyWakeable { return nil }
        continue
      }
      guard let deadline = platform.earliestDeadline else {
        if inputOpen || uart.hasBacklog || inputStalled || virtio?.console?.hasBacklog == true
          || virtio?.network != nil
        {
          // A stalled paste waits for the guest to drain the console: poll it.
          doorbell.wait(timeoutNanoseconds: inputStalled ? 1_000_000 : nil)
          continue
        }
        return .guestFailure(
          "vCPU halted waiting for an interrupt, but no timer is armed and no input can arrive")
      }
      if let clock = platform.clock as? InstructionClock {
        clock.skip(to: deadline)
        continue
      }
      let now = platform.clock.nanoseconds
      if deadline > now { doorbell.wait(timeoutNanoseconds: deadline - now) }
    }
  }

  private func takeHostEvents() -> MachineOutcome? {
    guard hostAttention.load(ordering: .acquiring) else { return nil }
    lock.lock()
    if hostStop == nil { hostAttention.store(false, ordering: .relaxed) }
    let stop = hostStop
    lock.unlock()
    if let stop { return stop }
    if requests.hasWork {
      requests.serve(stopRequested: { [self] in
        lock.lock()
        defer { lock.unlock() }
        return hostStop != nil
      })
      lock.lock()
      let stop = hostStop
      lock.unlock()
      if let stop { return stop }
    }
    moveInputToConsole()
    virtio?.deliverNetworkFrames()
    return nil
  }

  /// Hands queued console input to the UART, as much as it takes, and wakes a
  /// reader waiting for room.
  /// Room for host input in the guest's console: the UART's backlog, or hvc0's.
  private var consoleRoom: Int { virtio?.console?.hostRoom ?? uart.hostRoom }

  /// Moves queued host input into the guest's console as far as it has room.
  private func moveInputToConsole() {
    lock.lock()
    defer { lock.unlock() }
    guard !pendingInput.isEmpty else {
      inputStalled = false
      return
    }
    let n = virtio?.console?.receive(pendingInput) ?? uart.receive(pendingInput)
    pendingInput.removeFirst(n)
    inputStalled = !pendingInput.isEmpty
    lock.broadcast()
  }

  private func outcome(for r: StopRequest) -> MachineOutcome {
    switch r {
    case .debugExit(let s): return .debugExit(status: s)
    case .reset: return .reset
    case .powerOff: return .powerOff
    }
  }

  /// Engine counters plus the VMM's own exit counts, for `--stats`.
  public func statistics() -> [String: UInt64] {
    var s = scheduler.statistics()
    s["vmm.exits.io"] = exits.io
    s["vmm.exits.mmio"] = exits.mmio
    s["vmm.exits.halt"] = exits.halt
    s["vmm.exits.shutdown"] = exits.shutdown
    s["vmm.exits.hypercall"] = exits.hypercall
    s["vmm.hypercalls.unknown"] = hypercalls.unknownCalls
    s["vmm.exits.internal_error"] = exits.internalError
    s["vmm.host_kicks"] = exits.interrupted
    s["vmm.host_loop.wakeups"] = hostLoop.wakeups
    s["vmm.host_loop.timer_programs"] = hostLoop.timerPrograms
    s["uart.bytes_transmitted"] = uart.bytesTransmitted
    if let mmu { s.merge(mmu.statistics()) { a, _ in a } }
    if let v = virtio { s.merge(v.statistics()) { a, _ in a } }
    return s
  }
}

public enum MachineError: Error, CustomStringConvertible, Equatable {
  case invalidConfig(String)
  public var description: String {
    switch self {
    case .invalidConfig(let s): return s
    }
  }
}
