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
  @Option(
    help: """
      The network: none (default), user[,hostfwd=tcp:127.0.0.1:2222-:22,...] (user-mode, \
      as QEMU's -nic user: the guest is 10.0.2.15 by DHCP, the host 10.0.2.2), or tap=NAME.
      """)
  var net: String?

  /// Fills `config.virtio` before the guest starts. Every device error (a malformed
  /// spec, a missing image or a directory) is one line with status 66: a host-side problem
  /// with what the devices are made of.
  func apply<C: ParsableCommand>(to config: inout MachineConfig, command: C.Type) {
    do {
      config.virtio = try VirtioConfig(
        disks: disks, console: console, entropy: rng, network: net)
    } catch {
      fail("\(error)", status: .unusableInput)
    }
  }
}
