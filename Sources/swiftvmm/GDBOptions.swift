import ArgumentParser
import Foundation
import VMM

/// `--gdb` and `--gdb-wait`, shared by `run` and `linux` through `VMOptions`.
struct GDBOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Serve the GDB remote protocol here (interpreter and translator engines): tcp:HOST:PORT or unix:PATH.",
      valueName: "address"))
  var gdb: String?
  @Flag(help: "With --gdb: stop before the guest's first instruction until gdb continues.")
  var gdbWait = false

  /// What to serve, after checking the options against the configuration
  /// (usage errors exit 64); nil without --gdb.
  func request<C: ParsableCommand>(for config: MachineConfig, command: C.Type) -> GDBRequest? {
    guard let gdb else {
      if gdbWait { C.usageError("--gdb-wait needs --gdb") }
      return nil
    }
    guard config.engine.interpretsInstructions else {
      C.usageError(
        "--gdb needs --engine interpreter or translator (KVM_SET_GUEST_DEBUG is not verified under this host's KVM-PVM)"
      )
    }
    guard config.cpus == 1 else { C.usageError("--gdb debugs one vCPU: use --cpus 1") }
    do {
      return GDBRequest(endpoint: try GDBEndpoint(parsing: gdb), wait: gdbWait)
    } catch {
      C.usageError("\(error)")
    }
  }
}

struct GDBRequest {
  var endpoint: GDBEndpoint
  var wait: Bool
}

/// Starts the gdb server for `session` (exit 73 when the address cannot be bound).
func startGDBServer(_ request: GDBRequest?, session: VMSession) -> GDBServer? {
  guard let endpoint = request?.endpoint else { return nil }
  let wait = request?.wait ?? false
  do {
    let server = try GDBServer(
      endpoint: endpoint, machine: { session.machine }, stopVM: { session.requestStop($0) })
    if wait { try server.stopAtFirstInstruction() }
    server.start()
    var shown = endpoint
    if case .tcp(let host, _) = endpoint { shown = .tcp(host: host, port: server.boundPort) }
    let note = wait ? "; the guest waits for gdb to continue" : ""
    FileHandle.standardError.write(Data("swiftvmm: gdb server on \(shown)\(note)\n".utf8))
    return server
  } catch {
    fail("\(error)", status: .cannotCreateOutput)
  }
}
