import Engine
import Foundation
import Logging
import VMM

/// An x86-64 virtual machine a Swift program configures, starts, talks to
/// through its console, pauses, resumes and stops.
///
/// ```swift
/// let vm = try VirtualMachine(.init(), console: { bytes in
///   FileHandle.standardOutput.write(Data(bytes))
/// })
/// let outcome = vm.run()
/// ```
///
/// Console output arrives on the vCPU thread in runs of bytes (flushed at each
/// newline). Every other method may be called from any thread.
public final class VirtualMachine: @unchecked Sendable {
  /// Which CPU engine runs the guest.
  public enum Engine: String, Sendable, CaseIterable {
    /// KVM where `/dev/kvm` offers hardware virtualization, else the translator.
    case automatic
    case kvm
    case interpreter
    /// The interpreter with hot blocks compiled to host code.
    case translator
  }

  /// What to boot and on what machine.
  public struct Configuration: Sendable {
    /// A Linux bzImage/PVH vmlinux, multiboot or ELF64 kernel; nil boots the
    /// embedded demo guest, which prints a greeting and exits.
    public var kernelPath: String?
    public var initrdPath: String?
    public var commandLine = ""
    public var memoryMiB = 256
    public var cpus = 1
    public var engine: Engine = .automatic
    /// Raw disk images, attached as virtio-blk disks vda, vdb, ... in order.
    public var disks: [Disk] = []
    /// Instruction-count time (software engines): runs repeat exactly.
    public var deterministic = false
    /// Stop after this many seconds of wall-clock time.
    public var timeout: Double?
    /// Stop after this many guest instructions (software engines).
    public var maxInstructions: UInt64?
    /// Reboot when the guest resets (otherwise a reset ends the run).
    public var rebootOnReset = true
    /// How the software engines virtualize the MMU; nil: ``MMU/direct``.
    public var mmu: MMU?
    /// The CPUID the guest sees: a policy name (`default`, `kvm`, `minimal`) or a JSON
    /// policy file (docs/CPUID.md); nil: the default policy less what the engine lacks.
    public var cpuidPolicy: String?
    /// The guest's console: the UART (ttyS0) or virtio-console (hvc0).
    public var consoleDevice: ConsoleDevice = .uart
    /// A virtio-rng device fed by the host's `getrandom`.
    public var entropy = false
    /// The guest's network card (virtio-net), and what is behind it.
    public var network: Network = .none

    /// The VM description in Firecracker's shape, for a config file; nil
    /// unless made by ``init(configFile:)``.
    var spec: VMSpec?

    public init(kernelPath: String? = nil) { self.kernelPath = kernelPath }

    /// Reads a Firecracker-style JSON config file (`swiftvmm run --config`'s format).
    public init(configFile path: String) throws(VirtualMachineError) {
      guard let data = FileManager.default.contents(atPath: path) else {
        throw VirtualMachineError("\(path): cannot be read")
      }
      do {
        spec = try VMSpec.parse(configFile: [UInt8](data))
      } catch {
        throw VirtualMachineError("\(path): \(error)")
      }
    }
  }

  public struct Disk: Sendable {
    public var path: String
    public var readOnly: Bool
    /// The serial number the guest reads (1-20 printable ASCII characters).
    public var id: String?
    public init(path: String, readOnly: Bool = false, id: String? = nil) {
      self.path = path
      self.readOnly = readOnly
      self.id = id
    }
  }

  /// How a run ended.
  public struct Outcome: Sendable, CustomStringConvertible {
    /// The process exit status `swiftvmm run` would use (README's table).
    public var exitStatus: Int32
    /// One line for a person, or nil for an ordinary end.
    public var message: String?
    /// The vCPU's registers and last exception, when the guest failed or a watchdog fired.
    public var registerDump: String?
    /// The retired-instruction count the run stopped at, when ``stopAtInstruction`` ended it.
    public var stoppedAtInstruction: UInt64?
    public var description: String { message ?? "exit status \(exitStatus)" }
  }

  let session: VMSession
  /// Where the guest's console goes (also the VMM's own console messages).
  let consoleOutput: ConsoleOutput
  private let lock = NSLock()
  private var thread: Thread?
  private var outcome: Outcome?
  /// The VMM's outcome of the run, for the statistics report.
  private(set) var machineOutcome: MachineOutcome?
  private var stopReason: StopReason?
  private let done = DispatchSemaphore(value: 0)
  /// Told when the run ends (a debugger attached with ``serveGDB(at:waitForDebugger:)``).
  var onEnd: [(MachineOutcome) -> Void] = []

  /// Builds the machine: loads the kernel, attaches the devices. Nothing runs yet.
  /// The VMM's own log goes through swift-log at `logLevel` (warnings by default).
  public convenience init(
    _ configuration: Configuration, logLevel: Logger.Level = .warning,
    console: @escaping @Sendable ([UInt8]) -> Void = { _ in }
  ) throws(VirtualMachineError) {
    let config = try VirtualMachine.machineConfig(configuration)
    var logger = Logger(label: "swiftvmm")
    logger.logLevel = logLevel
    try self.init(
      config, console: .callback(console), rebootOnReset: configuration.rebootOnReset,
      logger: logger)
  }

  /// A machine around a session built by another initializer.
  init(session: VMSession, console: ConsoleOutput) {
    self.session = session
    consoleOutput = console
    // Input is open until `closeConsoleInput()`, so a guest waiting for it is not hung.
    session.setInputOpen(true)
  }

  /// Maps the public configuration onto the VMM's one definition (VMSpec, then
  /// MachineConfig.validate()): the same checks and messages as the command line.
  static func machineConfig(_ c: Configuration) throws(VirtualMachineError) -> MachineConfig {
    guard let demo = Data(base64Encoded: EmbeddedGuest.base64) else {
      throw VirtualMachineError("the embedded demo guest is corrupt")
    }
    do {
      if let spec = c.spec { return try spec.machineConfig() }
      var spec = VMSpec()
      spec.bootSource = .init(
        kernelImagePath: c.kernelPath ?? EmbeddedGuest.name, bootArgs: c.commandLine,
        initrdPath: c.initrdPath)
      spec.machine.vcpuCount = c.cpus
      spec.machine.memSizeMiB = c.memoryMiB
      for (i, d) in c.disks.enumerated() {
        try spec.put(
          drive: .init(
            driveID: d.id ?? "disk\(i)", pathOnHost: d.path, isRootDevice: false,
            isReadOnly: d.readOnly), path: "disks[\(i)]")
      }
      spec.swiftvmm.engine = EngineKind(rawValue: c.engine.rawValue)  // nil for automatic
      spec.swiftvmm.deterministic = c.deterministic
      spec.swiftvmm.timeout = c.timeout
      spec.swiftvmm.maxInstructions = c.maxInstructions
      spec.swiftvmm.mmu = c.mmu.flatMap { MMUMode(name: $0.rawValue) }
      spec.swiftvmm.cpuid = c.cpuidPolicy
      spec.swiftvmm.console = ConsoleKind(rawValue: c.consoleDevice.rawValue)
      spec.swiftvmm.rng = c.entropy
      switch c.network {
      case .none: break
      case .user(let forwards):
        spec.swiftvmm.net = (["user"] + forwards.map { "hostfwd=\($0)" }).joined(separator: ",")
      case .tap(let name):
        try spec.put(interface: .init(ifaceID: "net0", hostDevName: name), path: "network")
      }
      if c.kernelPath != nil { return try spec.machineConfig() }
      return try spec.machineConfig(kernel: [UInt8](demo), kernelName: EmbeddedGuest.name)
    } catch {
      throw VirtualMachineError("\(error)")
    }
  }

  // MARK: Running

  /// Starts the guest on its own thread and returns at once.
  public func start() {
    lock.lock()
    defer { lock.unlock() }
    guard thread == nil else { return }
    let t = Thread { [self] in
      let o = session.run()
      for f in onEnd { f(o) }
      var stoppedAt: UInt64?
      if case .instructionStop(let n) = o { stoppedAt = n }
      lock.lock()
      machineOutcome = o
      outcome = Outcome(
        exitStatus: o.exitStatus,
        message: stopReason == .program && o == .userQuit ? "stopped by the program" : o.message,
        registerDump: o.printsRegisters ? session.machine.registerDump() : nil,
        stoppedAtInstruction: stoppedAt)
      lock.unlock()
      done.signal()
    }
    t.name = "swiftvmm-vcpu"
    t.stackSize = 16 << 20
    thread = t
    t.start()
  }

  /// Waits until the guest ends (it powers off, exits, fails, or ``stop()`` is called).
  public func wait() -> Outcome {
    done.wait()
    done.signal()  // later waiters return at once
    lock.lock()
    defer { lock.unlock() }
    return outcome!
  }

  /// Starts the guest and waits for it to end.
  public func run() -> Outcome {
    start()
    return wait()
  }

  /// Why a program ends a run.
  public enum StopReason: Equatable, Sendable {
    /// ``stop()``: exit status 0, "stopped by the program".
    case program
    /// The user quit from the console (the command's escape x): status 0.
    case consoleQuit
    /// The host process got signal N: status 128+N, as a shell reports it.
    case signal(Int32)
  }

  /// Ends the run; ``wait()`` then returns an outcome with exit status 0.
  public func stop() { stop(.program) }

  /// Ends the run for `reason`, which sets the outcome's exit status and message.
  public func stop(_ reason: StopReason) {
    lock.lock()
    if stopReason == nil { stopReason = reason }
    lock.unlock()
    switch reason {
    case .program, .consoleQuit: session.requestStop(.userQuit)
    case .signal(let n): session.requestStop(.signal(n))
    }
    resume()  // a paused vCPU must run to see the stop
  }

  // MARK: Console

  /// Types `bytes` into the guest's console. Blocks while the guest is not
  /// reading and its input queue is full; returns when every byte is queued or the VM ended.
  public func writeConsole(_ bytes: [UInt8]) { session.feedInput(bytes) }

  public func writeConsole(_ text: String) { writeConsole(Array(text.utf8)) }

  /// No more input will come: a guest that then waits only for input has ended.
  public func closeConsoleInput() { session.setInputOpen(false) }

  // MARK: Pause and resume

  /// Parks the vCPU at its next exit. Returns false if the guest is not running.
  @discardableResult
  public func pause() -> Bool { session.machine.pause() }

  public func resume() { session.machine.resume() }

  public var isPaused: Bool { session.machine.isPaused }

  // MARK: Snapshots

  /// What a saved snapshot holds and what saving it cost.
  public struct SnapshotInfo: Sendable {
    public var path: String
    /// The file's size.
    public var bytes: UInt64
    /// Guest RAM pages stored (zero pages are left out) and in all.
    public var pagesStored: UInt64
    public var pagesTotal: UInt64
    public var seconds: Double
  }

  /// Saves the whole machine (CPU, devices, memory) to one file. Call it while paused,
  /// or before or after the run; it throws, writing nothing usable, when the state
  /// cannot be saved (virtio-net or -console, a vCPU paused inside an I/O instruction).
  /// ``init(restoring:engine:maxInstructions:timeout:console:rebootOnReset:logger:)``
  /// brings it back.
  @discardableResult
  public func snapshot(to path: String) throws(VirtualMachineError) -> SnapshotInfo {
    let m = session.machine
    do {
      let s = try m.onVCPUThread { try m.saveSnapshot(to: path) }
      return SnapshotInfo(
        path: s.path, bytes: s.bytes, pagesStored: s.pagesStored, pagesTotal: s.pagesTotal,
        seconds: s.seconds)
    } catch {
      throw VirtualMachineError("\(error)")
    }
  }

  // MARK: Counters

  /// Engine and VMM counters (docs/STATS.md names: `instructions`, `vmm.exits.io`, ...),
  /// read between exits so they are consistent.
  public var counters: [String: UInt64] {
    let m = session.machine
    return (try? m.onVCPUThread { m.statistics() }) ?? [:]
  }
}

/// Why a machine could not be configured or built: one line naming the field or file.
public struct VirtualMachineError: Error, CustomStringConvertible, Sendable {
  public var description: String
  init(_ description: String) { self.description = description }
}
