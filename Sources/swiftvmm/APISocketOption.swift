import Foundation
import Logging
@_spi(Command) import SwiftVMMKit
import VMM

/// `run --api-sock PATH`: the Firecracker-compatible API. With a kernel or a
/// config file the VM starts at once and the API controls it; without, the VMM
/// waits for the configuration and `InstanceStart` (or `PUT /snapshot/load`).
extension Run {
  func serveAPI(path: String, spec: VMSpec?, config: MachineConfig?, logger: Logger) -> Never {
    // A guest reset ends the VM under the API (APIResetPolicy.swift).
    let console = consoleOptions.endingOnReset
    var running: VirtualMachine?
    if let config {
      do {
        running = try makeVM(config, console: console, logger: logger)
      } catch {
        fail(error.description, status: .unusableInput)
      }
    }
    // Opened in a helper: the do/catch-initialised `let` here crashed the release
    // compiler (Swift 6.3.1, CopyPropagation, with -enable-testing).
    let socket = openAPISocket(
      path: path, spec: spec, running: running, rebootOnReset: !console.noReboot, logger: logger)
    runVM(
      socket.waitForMachine(), console: console, stats: vm.stats,
      atEnd: { socket.close() })
  }

  private func openAPISocket(
    path: String, spec: VMSpec?, running: VirtualMachine?, rebootOnReset: Bool, logger: Logger
  ) -> APISocket {
    do {
      return try APISocket(
        path: path, spec: spec ?? VMSpec(), running: running, console: .fileDescriptor(1),
        rebootOnReset: rebootOnReset, logger: logger)
    } catch {
      fail(error.description, status: .cannotCreateOutput)
    }
  }
}
