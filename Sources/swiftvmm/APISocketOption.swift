import APIServer
import Foundation
import Logging
import VMM

/// `run --api-sock PATH`: the Firecracker-compatible API. With a kernel or a
/// config file the VM starts at once and the API controls it; without, the VMM
/// waits for the configuration and `InstanceStart`.
extension Run {
  func serveAPI(path: String, spec: VMSpec?, config: MachineConfig?, logger: Logger) -> Never {
    let handoff = SessionHandoff()
    let console = consoleOptions.endingOnReset
    let controller = VMController(spec: spec ?? VMSpec()) { config in
      let s = try makeSession(config, console: console, logger: logger)
      handoff.put(s)
      return s
    }
    if let config {
      do {
        controller.attach(try makeSession(config, console: console, logger: logger))
      } catch {
        fail(error.description, status: .unusableInput)
      }
    }
    let server: APIServer
    do {
      server = try APIServer(path: path, controller: controller)
    } catch {
      fail(error.description, status: .cannotCreateOutput)
    }
    let session = controller.session ?? handoff.take()
    runSession(session, console: console, stats: vm.stats, atEnd: { server.close() })
  }
}

/// Hands the session `InstanceStart` built on the API's queue to the main thread.
final class SessionHandoff: @unchecked Sendable {
  private let ready = DispatchSemaphore(value: 0)
  private var session: VMSession?

  func put(_ s: VMSession) {
    session = s
    ready.signal()
  }

  func take() -> VMSession {
    ready.wait()
    return session!
  }
}
