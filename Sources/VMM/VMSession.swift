import Foundation
import Logging

/// A VM as the user sees it across reboots: when the guest resets, the
/// machine is built again from its configuration (kernel reloaded, every
/// device in its power-on state) and runs on, as QEMU does, unless
/// `reboot` is false (`--no-reboot`), in which case the reset ends the run.
///
/// Host requests (console input, stop) may come from any thread; they go to
/// whichever machine is current, and a stop also prevents the next boot.
public final class VMSession {
  public let config: MachineConfig
  public let reboot: Bool
  private let console: ConsoleOutput
  private let logger: Logger
  private let lock = NSLock()
  private var current: Machine
  private var stopRequest: MachineOutcome?
  private var inputOpen = false
  /// `run` returned: no machine will take input any more.
  private var ended = false
  /// How many times the machine has started (1 before any reboot).
  public private(set) var boots = 1

  public init(
    config: MachineConfig, console: ConsoleOutput, reboot: Bool = true,
    logger: Logger = Logger(label: "swiftvmm")
  ) throws {
    self.config = config
    self.console = console
    self.reboot = reboot
    self.logger = logger
    current = try Machine(config: config, console: console, logger: logger)
  }

  /// A session around a machine built elsewhere (a restored snapshot); a reboot
  /// boots its configuration afresh.
  public init(
    machine: Machine, console: ConsoleOutput, reboot: Bool = true,
    logger: Logger = Logger(label: "swiftvmm")
  ) {
    config = machine.config
    self.console = console
    self.reboot = reboot
    self.logger = logger
    current = machine
  }

  /// The machine running now (or the last one, once `run` returned).
  public var machine: Machine {
    lock.lock()
    defer { lock.unlock() }
    return current
  }

  /// Stops the VM from another thread; no reboot follows.
  public func requestStop(_ outcome: MachineOutcome) {
    lock.lock()
    if stopRequest == nil { stopRequest = outcome }
    let m = current
    lock.unlock()
    m.requestStop(outcome)
  }

  /// Console input: blocks while the guest is not reading (back-pressure).
  /// Bytes the machine could not take because it reset go to the next one.
  public func feedInput(_ bytes: [UInt8]) {
    var rest = bytes[...]
    while !rest.isEmpty {
      lock.lock()
      let m = current
      let stopping = stopRequest != nil || ended
      lock.unlock()
      if stopping { return }
      let left = m.feedInput(Array(rest))
      if left.count == rest.count && machine === m { usleep(1000) }  // between boots
      rest = left
    }
  }

  public func setInputOpen(_ open: Bool) {
    lock.lock()
    inputOpen = open
    let m = current
    lock.unlock()
    m.setInputOpen(open)
  }

  /// Runs until an outcome other than a reset (or any outcome without
  /// `reboot`). `shouldReboot` is asked before each reboot, with the number
  /// of boots so far; tests use it to stop a guest that resets forever.
  public func run(shouldReboot: (Int) -> Bool = { _ in true }) -> MachineOutcome {
    defer {
      lock.lock()
      ended = true
      lock.unlock()
    }
    while true {
      let o = machine.run()
      guard o == .reset, reboot, shouldReboot(boots) else { return o }
      let next: Machine
      do {
        next = try Machine(config: config, console: console, logger: logger)
      } catch {
        return .guestFailure("cannot reboot: \(error)")
      }
      lock.lock()
      if let stop = stopRequest {
        lock.unlock()
        return stop
      }
      current = next
      boots += 1
      let open = inputOpen
      lock.unlock()
      next.setInputOpen(open)
      logger.info("guest reset: rebooting (boot \(boots))")
    }
  }
}
