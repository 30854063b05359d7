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
    let socket: APISocket
    do {
      socket = try APISocket(
        path: path, spec: spec ?? VMSpec(), running: running, console: .fileDescriptor(1),
        rebootOnReset: !console.noReboot, logger: logger)
    } catch {
      fail(error.description, status: .cannotCreateOutput)
    }
    runVM(
      socket.waitForMachine(), console: console, stats: vm.stats,
      atEnd: { socket.close() })
  }
}
