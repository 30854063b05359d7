import ArgumentParser
import VMM

/// The virtio device flags `run` and `linux` share; parsed by `VirtioConfig`.
struct VirtioOptions: ParsableArguments {
  @Option(
    name: .customLong("disk"),
    help: "A raw disk image as virtio-blk: PATH[,readonly][,id=NAME]. Repeatable (vda, vdb, ...).")
  var disks: [String] = []
  @Option(help: "The guest console: uart (ttyS0) or virtio (hvc0).")
  var console: String?
  @Flag(help: "A virtio-rng device fed by the host's getrandom.")
  var rng = false

  /// Fills `config.virtio`; a bad flag ends the program with status 66 before the guest starts.
  func apply(to config: inout MachineConfig) {
    do {
      config.virtio = try VirtioConfig(disks: disks, console: console, entropy: rng)
    } catch {
      fail("\(error)", status: 66)
    }
  }
}
