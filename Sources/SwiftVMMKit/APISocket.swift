import APIServer
import Foundation
import Logging
import VMM

/// Firecracker's HTTP API on a Unix socket, controlling one ``VirtualMachine``:
/// `swiftvmm run --api-sock`. The machine is either running already (a kernel or
/// config file on the command line) or made later by the API itself, with
/// `InstanceStart` or `PUT /snapshot/load`; ``waitForMachine()`` hands it over.
@_spi(Command)
public final class APISocket {
  private let server: APIServer
  private let controller: VMController
  private let handoff: MachineHandoff

  /// Serves at `path` (which must not exist yet). Machines the API makes write their
  /// console to `console`. Throws when the socket cannot be bound.
  public init(
    path: String, spec: VMSpec = VMSpec(), running: VirtualMachine? = nil,
    console: VirtualMachine.Console,
    rebootOnReset: Bool, logger: Logger
  ) throws(VirtualMachineError) {
    let handoff = MachineHandoff()
    self.handoff = handoff
    // Both run on the API's queue; the machine then runs where `waitForMachine` was called.
    let loader: VMController.Loader = { load in
      let vm = try VirtualMachine(
        restoring: load.snapshotPath,
        engine: load.engine.flatMap { VirtualMachine.Engine(rawValue: $0.rawValue) },
        console: console, rebootOnReset: rebootOnReset, logger: logger)
      if !load.resume { vm.startPaused() }
      handoff.put(vm)
      return vm.session
    }
    controller = VMController(spec: spec, loader: loader) { config in
      let vm = try VirtualMachine(
        config, console: console, rebootOnReset: rebootOnReset, logger: logger)
      handoff.put(vm)
      return vm.session
    }
    if let running {
      controller.attach(running.session)
      handoff.put(running)
    }
    do {
      server = try APIServer(path: path, controller: controller)
    } catch {
      throw VirtualMachineError(error.description)
    }
  }

  /// Blocks until there is a machine (given at init, or made through the API) and returns it.
  public func waitForMachine() -> VirtualMachine { handoff.take() }

  /// Stops serving and removes the socket file.
  public func close() { server.close() }
}

/// Hands the machine the API's queue made to the thread that runs it.
private final class MachineHandoff: @unchecked Sendable {
  private let ready = DispatchSemaphore(value: 0)
  private var vm: VirtualMachine?

  func put(_ v: VirtualMachine) {
    vm = v
    ready.signal()
  }

  func take() -> VirtualMachine {
    ready.wait()
    return vm!
  }
}
