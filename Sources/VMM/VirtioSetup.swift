import Devices
import Logging
import Memory

/// The virtio-pci devices of one machine, plugged in through the device
/// manager from a `VirtioConfig`.
public final class VirtioDevices {
  public private(set) var blocks: [VirtioBlock] = []
  public private(set) var console: VirtioConsole?
  public private(set) var entropy: VirtioEntropy?
  /// Their transports, in slot order.
  public private(set) var transports: [VirtioPCI] = []

  init() {}

  /// Opens the disk images (one-line errors: missing, locked, too small) and
  /// attaches every device. `output` receives virtio-console bytes.
  /// Nil when the config asks for no virtio device.
  static func attach(
    _ config: VirtioConfig, memory: GuestMemory, manager: DeviceManager?,
    output: @escaping (UnsafeRawBufferPointer) -> Void, logger: Logger
  ) throws -> VirtioDevices? {
    guard !config.isEmpty else { return nil }
    guard let manager else {
      throw MachineError.invalidConfig(
        "virtio devices (--disk, --console virtio, --rng) need the interpreter engine: only its platform has a PCI host so far"
      )
    }
    let v = VirtioDevices()
    for (i, d) in config.disks.enumerated() {
      let disk = try DiskImage(path: d.path, readOnly: d.readOnly)
      let b = VirtioBlock(disk: disk, serial: d.id ?? "swiftvmm-disk\(i)", logger: logger)
      try v.plug(b, name: "virtio-blk \(d.path)", memory: memory, manager: manager, logger: logger)
      v.blocks.append(b)
    }
    if config.console == .virtio {
      let c = VirtioConsole(output: output)
      try v.plug(c, name: "virtio-console", memory: memory, manager: manager, logger: logger)
      v.console = c
    }
    if config.entropy {
      let r = VirtioEntropy()
      try v.plug(r, name: "virtio-rng", memory: memory, manager: manager, logger: logger)
      v.entropy = r
    }
    return v
  }

  private func plug(
    _ device: VirtioDevice, name: String, memory: GuestMemory, manager: DeviceManager,
    logger: Logger
  ) throws {
    let t = try VirtioPCI(device: device, memory: memory, name: name, logger: logger)
    try manager.allocateMSIXVectors(t.msix.vectorCount, for: name)
    let r = try manager.addPCIDevice(t, name: name)
    t.intx = manager.intxLine(slot: r.slot)
    t.msix.delivery = manager.msiDelivery
    transports.append(t)
  }
}
