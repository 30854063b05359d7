// Boots SwiftVMM's embedded demo guest and prints what it says on its console.
// Run: swift run example-boot [--engine interpreter|translator|kvm]
import Foundation
import SwiftVMMKit

var config = VirtualMachine.Configuration()  // no kernelPath: the demo guest
config.memoryMiB = 64
config.timeout = 60
if let i = CommandLine.arguments.firstIndex(of: "--engine"), i + 1 < CommandLine.arguments.count {
  config.engine = VirtualMachine.Engine(rawValue: CommandLine.arguments[i + 1]) ?? .automatic
}

do {
  let vm = try VirtualMachine(config) { bytes in
    FileHandle.standardOutput.write(Data(bytes))
  }
  let outcome = vm.run()
  print("guest ended: \(outcome), \(vm.counters["vmm.exits.io"] ?? 0) I/O exits")
  exit(outcome.exitStatus == 1 ? 0 : 1)  // the demo exits through isa-debug-exit with 0: status 1
} catch {
  print("cannot boot: \(error)")
  exit(1)
}
