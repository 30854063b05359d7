import Devices
import Logging
import Memory

/// The virtio-pci devices of one machine, plugged in through the device
/// manager from a `VirtioConfig`.
public final class VirtioDevices {
  public private(set) var blocks: [VirtioBlock] = []
  public private(set) var console: VirtioConsole?
  public private(set) var entropy: VirtioEntropy?
  public private(set) var network: VirtioNet?
  /// Where `network`'s frames go; it receives on a thread of its own.
  public private(set) var networkBackend: NetworkBackend?
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
    switch config.network {
    case .none: break
    case .user(let forwards):
      v.networkBackend = try UserNetworkBackend(forwards: forwards)
    case .tap(let name):
      v.networkBackend = try TapNetworkBackend(name: name)
    }
    if let backend = v.networkBackend {
      let n = VirtioNet(mac: config.mac) { [weak backend] in backend?.send($0) }
      try v.plug(n, name: "virtio-net", memory: memory, manager: manager, logger: logger)
      v.network = n
    }
    return v
  }

  /// Moves frames the back-end received into virtio-net (vCPU thread).
  func deliverNetworkFrames() {
    guard let network, let backend = networkBackend else { return }
    for f in backend.takeReceived() { network.receive(f) }
  }

  /// Counters for `--stats`.
  func statistics() -> [String: UInt64] {
    var s: [String: UInt64] = [:]
    if let c = console {
      s["virtio_console.bytes_transmitted"] = c.bytesTransmitted
      s["virtio_console.transmit_chains"] = c.transmitChains
    }
    guard let c = network?.counters else { return s }
    return s.merging([
      "virtio_net.frames_transmitted": c.framesTransmitted,
      "virtio_net.bytes_transmitted": c.bytesTransmitted,
      "virtio_net.frames_received": c.framesReceived,
      "virtio_net.bytes_received": c.bytesReceived,
      "virtio_net.malformed_transmits": c.malformedTransmits,
      "virtio_net.receive_drops": c.receiveDrops + (networkBackend?.drops ?? 0),
    ]) { a, _ in a }
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
