import Boot
import Foundation
import Logging
import VMM

/// What a host program such as the `swiftvmm` command needs beyond the basic
/// lifecycle: a console on a file descriptor, restoring snapshots, exact stops,
/// a debugger, and the counters as a report.
extension VirtualMachine {
  /// How the interpreter and translator virtualize the MMU (docs/ARCHITECTURE.md).
  public enum MMU: String, Sendable, CaseIterable {
    /// The walker reads guest page tables at guest-physical addresses (a plain emulator).
    case direct
    /// A two-dimensional walk through the VMM's nested table.
    case nested
    /// The VMM's shadow table (guest-virtual to host-physical), built on misses.
    case shadow
    /// Page-table updates by hypercall (SwiftVMM's own paravirtual test kernel).
    case paravirt
  }

  /// The device the guest's console is on.
  public enum ConsoleDevice: String, Sendable, CaseIterable {
    /// A 16550A UART at 0x3F8 (Linux's ttyS0).
    case uart
    /// virtio-console (Linux's hvc0).
    case virtio
  }

  /// A virtio-net card and its host side.
  public enum Network: Equatable, Sendable {
    /// No network card.
    case none
    /// User-mode networking (libslirp): the guest gets 10.0.2.15 by DHCP and reaches the
    /// host as 10.0.2.2; each forward is `tcp:HOSTADDR:HOSTPORT-:GUESTPORT`.
    case user(hostForwards: [String] = [])
    /// An existing TAP device on the host.
    case tap(String)
  }

  /// Where the guest's console output goes.
  public enum Console {
    /// Runs of bytes on the vCPU thread (flushed at each newline).
    case callback(@Sendable ([UInt8]) -> Void)
    /// Written to a file descriptor (a terminal or a pipe), as `swiftvmm run` does with 1.
    case fileDescriptor(Int32)

    func output() -> ConsoleOutput {
      switch self {
      case .callback(let f): return ConsoleOutput(handler: f)
      case .fileDescriptor(let fd): return ConsoleOutput(fd: fd)
      }
    }
  }

  /// Builds the machine from the VMM's whole configuration (`MachineConfig`: every
  /// option `swiftvmm run` and `linux` take, checked by `MachineConfig.validate()`).
  /// Nothing runs yet. Errors name the kernel or the device at fault.
  @_spi(Command)
  public convenience init(
    _ config: MachineConfig, console: Console, rebootOnReset: Bool = true,
    logger: Logger = Logger(label: "swiftvmm")
  ) throws(VirtualMachineError) {
    let out = console.output()
    let session: VMSession
    do {
      session = try VMSession(config: config, console: out, reboot: rebootOnReset, logger: logger)
    } catch let e as BootError {
      throw VirtualMachineError("\(config.kernelName): \(e)")
    } catch {
      throw VirtualMachineError("\(error)")
    }
    self.init(session: session, console: out)
  }

  /// Rebuilds a machine saved by ``snapshot(to:)`` (or `swiftvmm run --snapshot-at`),
  /// in the state it was saved in, ready to ``start()``. `engine` resumes it on another
  /// engine than it was saved on; `maxInstructions` and `timeout` are this run's watchdogs.
  /// A truncated, corrupt or foreign file is refused before any machine is built.
  public convenience init(
    restoring path: String, engine: Engine? = nil, maxInstructions: UInt64? = nil,
    timeout: Double? = nil, console: Console, rebootOnReset: Bool = true,
    logger: Logger = Logger(label: "swiftvmm")
  ) throws(VirtualMachineError) {
    let out = console.output()
    let machine: Machine
    do {
      machine = try Machine(
        restoring: path, engine: engine.flatMap { EngineKind(rawValue: $0.rawValue) },
        maxInstructions: maxInstructions, timeout: timeout, console: out, logger: logger)
    } catch {
      throw VirtualMachineError("\(error)")
    }
    self.init(
      session: VMSession(machine: machine, console: out, reboot: rebootOnReset, logger: logger),
      console: out)
  }

  /// The engine running the guest: "interpreter", "translator" or "kvm".
  public var engineName: String { session.machine.cpu.engineName }

  /// Whether guest time counts instructions (runs repeat exactly; exact stops possible).
  public var isDeterministic: Bool { session.machine.config.deterministic }

  /// With instruction-count time: the run ends after exactly this many retired
  /// instructions (``Outcome/stoppedAtInstruction``), to be saved with ``snapshot(to:)``.
  /// Set it before ``start()``.
  public var stopAtInstruction: UInt64? {
    get { session.machine.stopAtInstruction }
    set { session.machine.stopAtInstruction = newValue }
  }

  /// Before ``start()``: the guest waits before its first instruction until ``resume()``.
  public func startPaused() { session.machine.startPaused() }

  /// Serves the GDB remote protocol at `address` (`tcp:HOST:PORT`, port 0 picks one,
  /// or `unix:PATH`) until the run ends; with `waitForDebugger` the guest stops before
  /// its first instruction until gdb continues. Returns the address bound.
  /// Interpreter and translator engines, one vCPU.
  public func serveGDB(at address: String, waitForDebugger: Bool = false)
    throws(VirtualMachineError) -> String
  {
    do {
      let endpoint = try GDBEndpoint(parsing: address)
      let session = self.session
      let server = try GDBServer(
        endpoint: endpoint, machine: { session.machine }, stopVM: { session.requestStop($0) })
      if waitForDebugger { try server.stopAtFirstInstruction() }
      onEnd.append { server.machineEnded($0) }
      server.start()
      if case .tcp(let host, _) = endpoint {
        return GDBEndpoint.tcp(host: host, port: server.boundPort).description
      }
      return endpoint.description
    } catch {
      throw VirtualMachineError("\(error)")
    }
  }

  /// After the run: the engine and VMM counters and the outcome as JSON (docs/STATS.md).
  public func statisticsReport() -> [UInt8] {
    StatsReport(machine: session.machine, outcome: machineOutcome ?? .userQuit).json()
  }

  /// How the MMU translates guest-virtual `address` now (its page-table walk), for
  /// debugging a guest's paging.
  public func translate(virtualAddress address: UInt64) -> String {
    session.machine.translate(address)
  }

  /// Writes a line of the host program's own to the console output, between the guest's runs.
  public func writeConsoleMessage(_ text: String) { consoleOutput.writeDirectly(text) }
}
