import Foundation
import VMM

/// `run --config vm.json`: the machine comes from a Firecracker-shaped config
/// file (VMSpec), so the command line may not describe it a second time.
extension Run {
  /// The machine options given on the command line, by flag name.
  var machineFlagsGiven: [String] {
    var given: [String] = []
    func note(_ set: Bool, _ flag: String) { if set { given.append(flag) } }
    note(kernel != nil, "--kernel")
    note(initrd != nil, "--initrd")
    note(!modules.isEmpty, "--module")
    note(vm.memory != nil, "--memory")
    note(vm.cpus != 1, "--cpus")
    note(vm.engine != nil, "--engine")
    note(vm.cpuid != nil, "--cpuid")
    note(vm.deterministic, "--deterministic")
    note(vm.maxInstructions != nil, "--max-instructions")
    note(vm.timeout != nil, "--timeout")
    note(vm.cmdline != nil, "--cmdline")
    note(vm.mmuOptions.mmu != nil, "--mmu")
    note(vm.mmuOptions.shadowCap != nil, "--shadow-cap")
    note(vm.mmuOptions.nestedWalkCache, "--nested-walk-cache")
    note(vm.mmuOptions.translate != nil, "--translate")
    note(!virtioOptions.disks.isEmpty, "--disk")
    note(virtioOptions.console != nil, "--console")
    note(virtioOptions.rng, "--rng")
    note(virtioOptions.net != nil, "--net")
    return given
  }

  /// Reads and maps the config file. A flag that the file would contradict is a
  /// usage error (64); anything wrong with the file or what it names is unusable
  /// input (66), one line naming the field.
  func configFromFile(_ path: String) -> (VMSpec, MachineConfig) {
    if let flag = machineFlagsGiven.first {
      Run.usageError("\(flag) cannot be combined with --config: say it in the config file")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      fail(
        "--config '\(path)': \(FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")",
        status: .unusableInput)
    }
    do {
      let spec = try VMSpec.parse(configFile: [UInt8](data))
      return (spec, try spec.machineConfig())
    } catch {
      fail("\(path): \(error)", status: .unusableInput)
    }
  }
}
