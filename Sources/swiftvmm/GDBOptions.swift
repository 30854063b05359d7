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
      _ = try GDBEndpoint(parsing: gdb)  // a malformed address is a usage error, before any VM
      return GDBRequest(address: gdb, wait: gdbWait)
    } catch {
      C.usageError("\(error)")
    }
  }
}

/// A checked `--gdb` address, served through `VirtualMachine.serveGDB`.
struct GDBRequest {
  var address: String
  var wait: Bool
}
