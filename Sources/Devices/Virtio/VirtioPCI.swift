import Logging
import Memory

/// The modern virtio-pci transport (virtio 1.2 §4.1) for one `VirtioDevice`.
///
/// One 32-bit memory BAR (BAR0) holds every structure, each in its own page:
///
///     0x0000 common configuration     0x3000 notifications (4 bytes per queue)
///     0x1000 ISR status               0x4000 MSI-X table, 0x5000 MSI-X PBA
///     0x2000 device configuration
///
/// Config space carries the vendor capabilities for the first four and the
/// PCI-configuration access window, plus the MSI-X capability. Interrupts go
/// out as MSI-X messages when the driver enabled MSI-X, else on the INTx line
/// with the ISR bits (read-to-clear) saying why.
///
/// The driver's mistakes never reach the host: a malformed ring or a queue
/// that cannot be enabled sets DEVICE_NEEDS_RESET; bad register accesses and
/// notifications of queues that are not live are ignored. Each kind is logged once.
public final class VirtioPCI: PCIConfigSpace, PCIDevice, VirtioTransport {
  public enum Status {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let needsReset: UInt8 = 64
    public static let failed: UInt8 = 128
  }
  enum Layout {
    static let common: UInt64 = 0x0000
    static let isr: UInt64 = 0x1000
    static let device: UInt64 = 0x2000
    static let notify: UInt64 = 0x3000
    static let msixTable: UInt64 = 0x4000
    static let msixPBA: UInt64 = 0x5000
    static let barSize: UInt64 = 0x8000
    static let commonLength: UInt64 = 0x40
    static let notifyMultiplier: UInt32 = 4
  }
  enum CapType {
    static let common: UInt8 = 1
    static let notify: UInt8 = 2
    static let isr: UInt8 = 3
    static let device: UInt8 = 4
    static let pciConfig: UInt8 = 5
  }
  static let noVector: UInt16 = 0xFFFF
  static let bar = 0

  public let device: VirtioDevice
  /// Set right after super.init: the capability needs this config space.
  public private(set) var msix: MSIXCapability!
  /// The INTx line the device manager routed pin INTA# to.
  public var intx: IRQLine?
  public internal(set) var queues: [SplitVirtqueue]
  public internal(set) var status: UInt8 = 0
  public internal(set) var driverFeatures: UInt64 = 0
  public internal(set) var isr: UInt8 = 0
  let memory: GuestMemory
  private let logger: Logger
  private let name: String
  private var warned = Set<String>()
  var deviceFeatureSelect: UInt32 = 0
  var driverFeatureSelect: UInt32 = 0
  var queueSelect: UInt16 = 0
  var configVector = VirtioPCI.noVector
  private var pciConfigCap = 0

  public var offeredFeatures: UInt64 {
    device.deviceFeatures | VirtioFeature.version1 | VirtioFeature.ringIndirectDescriptors
      | VirtioFeature.ringEventIndex
  }

  public init(
    device: VirtioDevice, memory: GuestMemory, name: String,
    logger: Logger = Logger(label: "swiftvmm.virtio-pci")
  ) throws {
    self.device = device
    self.memory = memory
    self.name = name
    self.logger = logger
    queues = device.queueMaxSizes.map { SplitVirtqueue(maxSize: $0, memory: memory) }
    precondition(device.configSize <= 0x1000 && queues.count <= 0x400, "fits its BAR pages")
    let classCode: UInt32
    switch device.deviceType {
    case .network: classCode = 0x02_0000  // network, Ethernet
    case .block: classCode = 0x01_8000  // mass storage, other
    case .console: classCode = 0x07_8000  // communication, other
    case .entropy: classCode = 0xFF_0000  // unclassified
    }
    // 0x1040 + type: a modern-only device, revision 1 (§4.1.2).
    super.init(
      vendor: 0x1AF4, device: 0x1040 + device.deviceType.rawValue, classCode: classCode,
      revision: 1)
    set16(0x2C, 0x1AF4)  // subsystem vendor
    set16(0x2E, 0x40)  // subsystem ID, as QEMU
    writable[0x04] = 0x06  // memory space, bus master: there is no I/O BAR
    interruptPin = 1
    try declareBAR(Self.bar, PCIBARDescriptor(size: Layout.barSize))
    try addVirtioCap(CapType.common, offset: Layout.common, length: Layout.commonLength)
    try addVirtioCap(
      CapType.notify, offset: Layout.notify, length: UInt64(max(queues.count, 1)) * 4,
      extra: le32(Layout.notifyMultiplier))
    try addVirtioCap(CapType.isr, offset: Layout.isr, length: 4)
    if device.configSize > 0 {
      try addVirtioCap(CapType.device, offset: Layout.device, length: UInt64(device.configSize))
    }
    // The access window: bar (1), offset (4), length (4) and data (4) are the driver's.
    pciConfigCap = try addCapability(
      id: 0x09, body: [20, CapType.pciConfig, 0, 0, 0, 0] + le32(0) + le32(0) + le32(0),
      writableBody: [0, 0, 0xFF, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 12))
    msix = try MSIXCapability(
      vectorCount: queues.count + 1, config: self, tableBAR: Self.bar,
      tableOffset: Layout.msixTable, pbaBAR: Self.bar, pbaOffset: Layout.msixPBA)
    let data = pciConfigCap + 16
    observeWrites(data..<(data + 4)) { [weak self] in self?.pciConfigDataWritten() }
  }

  private func addVirtioCap(_ type: UInt8, offset: UInt64, length: UInt64, extra: [UInt8] = [])
    throws
  {
    let body =
      [UInt8(16 + extra.count), type, UInt8(Self.bar), 0, 0, 0] + le32(UInt32(offset))
      + le32(UInt32(length)) + extra
    try addCapability(id: 0x09, body: body)
  }

  private func le32(_ v: UInt32) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) }
  }

  private func warnOnce(_ what: String) {
    if warned.insert(what).inserted { logger.warning("\(name): \(what)") }
  }

  // MARK: BAR accesses

  public func barRead(bar: Int, offset: UInt64, size: Int) -> UInt64 {
    guard bar == Self.bar else { return 0 }
    if let v = msix.barRead(bar: bar, offset: offset, size: size) { return v }
    switch offset {
    case Layout.common..<(Layout.common + Layout.commonLength):
      return commonRead(offset - Layout.common, size)
    case Layout.isr..<(Layout.isr + 4):
      // Reading acknowledges: the bits clear and INTx drops.
      let v = offset == Layout.isr ? UInt64(isr) : 0
      if offset == Layout.isr {
        isr = 0
        intx?.set(false)
      }
      return v
    case Layout.device..<(Layout.device + 0x1000):
      return device.readConfig(offset: Int(offset - Layout.device), size: size)
    default:
      return 0
    }
  }

  public func barWrite(bar: Int, offset: UInt64, size: Int, value: UInt64) {
    guard bar == Self.bar else { return }
    if msix.barWrite(bar: bar, offset: offset, size: size, value: value) { return }
    switch offset {
    case Layout.common..<(Layout.common + Layout.commonLength):
      commonWrite(offset - Layout.common, size, value)
    case Layout.device..<(Layout.device + 0x1000):
      device.writeConfig(offset: Int(offset - Layout.device), size: size, value: value)
    case Layout.notify..<(Layout.notify + 0x1000):
      notify(Int((offset - Layout.notify) / UInt64(Layout.notifyMultiplier)))
    default:
      break
    }
  }

  // MARK: Common configuration (§4.1.4.3)

  private var selectedQueue: SplitVirtqueue? {
    Int(queueSelect) < queues.count ? queues[Int(queueSelect)] : nil
  }

  /// Reads any bytes of the structure, so odd-sized driver reads still get the right bytes.
  private func commonRead(_ offset: UInt64, _ size: Int) -> UInt64 {
    let q = selectedQueue
    var bytes: [UInt8] = []
    appendLE(&bytes, deviceFeatureSelect)
    appendLE(
      &bytes,
      deviceFeatureSelect < 2
        ? UInt32(truncatingIfNeeded: offeredFeatures >> (32 * UInt64(deviceFeatureSelect))) : 0)
    appendLE(&bytes, driverFeatureSelect)
    appendLE(
      &bytes,
      driverFeatureSelect < 2
        ? UInt32(truncatingIfNeeded: driverFeatures >> (32 * UInt64(driverFeatureSelect))) : 0)
    appendLE(&bytes, configVector)
    appendLE(&bytes, UInt16(queues.count))
    bytes += [status, 0]  // device_status, config_generation (the config never changes)
    appendLE(&bytes, queueSelect)
    appendLE(&bytes, q?.size ?? 0)  // 0: no such queue
    appendLE(&bytes, q?.msixVector ?? Self.noVector)
    appendLE(&bytes, UInt16(q?.isReady == true ? 1 : 0))
    appendLE(&bytes, queueSelect)  // queue_notify_off: queue i notifies at 4*i
    appendLE(&bytes, q?.descriptorTable ?? 0)
    appendLE(&bytes, q?.driverArea ?? 0)
    appendLE(&bytes, q?.deviceArea ?? 0)
    appendLE(&bytes, queueSelect)  // queue_notify_data
    appendLE(&bytes, UInt16(0))  // queue_reset
    return readLE(bytes, offset: Int(offset), size: size)
  }

  private func commonWrite(_ offset: UInt64, _ size: Int, _ value: UInt64) {
    let v32 = UInt32(truncatingIfNeeded: value)
    let v16 = UInt16(truncatingIfNeeded: value)
    switch (offset, size) {
    case (0x00, 4): deviceFeatureSelect = v32
    case (0x08, 4): driverFeatureSelect = v32
    case (0x0C, 4):
      guard status & (Status.featuresOK | Status.driverOK) == 0 else {
        return warnOnce("driver changed features after FEATURES_OK; ignored")
      }
      if driverFeatureSelect < 2 {
        let shift = 32 * UInt64(driverFeatureSelect)
        driverFeatures = driverFeatures & ~(0xFFFF_FFFF << shift) | UInt64(v32) << shift
      }
    case (0x10, 2): configVector = v16
    case (0x14, 1): writeStatus(UInt8(truncatingIfNeeded: value))
    case (0x16, 2): queueSelect = v16
    case (0x18, 2), (0x1A, 2), (0x1C, 2), (0x20, _), (0x24, 4), (0x28, _), (0x2C, 4), (0x30, _),
      (0x34, 4):
      queueWrite(offset, size, value)
    default:
      warnOnce(
        "ignored \(size)-byte write to common configuration offset 0x\(String(offset, radix: 16))")
    }
  }

  private func queueWrite(_ offset: UInt64, _ size: Int, _ value: UInt64) {
    guard let q = selectedQueue else {
      return warnOnce("write to queue \(queueSelect), which does not exist; ignored")
    }
    guard !q.isReady else {
      return warnOnce("write to the registers of enabled queue \(queueSelect); ignored")
    }
    /// Sets 4 or 8 bytes of a 64-bit address register.
    func address(_ old: UInt64, _ high: Bool) -> UInt64 {
      if size == 8 && !high { return value }
      guard size == 4 else { return old }
      return high
        ? old & 0xFFFF_FFFF | value << 32 : old & ~0xFFFF_FFFF | value & 0xFFFF_FFFF
    }
    let v16 = UInt16(truncatingIfNeeded: value)
    switch offset {
    case 0x18: q.size = v16
    case 0x1A: q.msixVector = v16
    case 0x1C:
      guard v16 == 1 else { return }
      guard status & Status.featuresOK != 0 else {
        return warnOnce("queue enabled before FEATURES_OK; ignored")
      }
      q.indirectAllowed = driverFeatures & VirtioFeature.ringIndirectDescriptors != 0
      q.eventIndex = driverFeatures & VirtioFeature.ringEventIndex != 0
      do { try q.enable() } catch { deviceFailed(error) }
    case 0x20, 0x24: q.descriptorTable = address(q.descriptorTable, offset == 0x24)
    case 0x28, 0x2C: q.driverArea = address(q.driverArea, offset == 0x2C)
    case 0x30, 0x34: q.deviceArea = address(q.deviceArea, offset == 0x34)
    default: break
    }
  }

  private func writeStatus(_ value: UInt8) {
    if value == 0 { return reset() }
    let newly = value & ~status
    if newly & Status.featuresOK != 0 {
      let unknown = driverFeatures & ~offeredFeatures
      guard unknown == 0, driverFeatures & VirtioFeature.version1 != 0 else {
        // FEATURES_OK stays clear: the driver reads it back and gives up (§3.1.1).
        warnOnce(
          "driver features 0x\(String(driverFeatures, radix: 16)) refused (VERSION_1 is required)")
        status = value & ~Status.featuresOK | status & Status.needsReset
        return
      }
    }
    if newly & Status.driverOK != 0 {
      guard value & Status.featuresOK != 0, status & Status.featuresOK != 0 else {
        warnOnce("DRIVER_OK without acknowledged features; the device needs a reset")
        status |= Status.needsReset
        return
      }
    }
    status = value | status & Status.needsReset
    if newly & Status.driverOK != 0 {
      device.activate(
        features: driverFeatures, queues: queues, memory: memory, transport: self)
    }
  }

  private func reset() {
    device.reset()
    for q in queues { q.reset() }
    status = 0
    driverFeatures = 0
    deviceFeatureSelect = 0
    driverFeatureSelect = 0
    queueSelect = 0
    configVector = Self.noVector
    isr = 0
    intx?.set(false)
  }

  // MARK: Notifications and interrupts

  private func notify(_ index: Int) {
    guard index < queues.count else {
      return warnOnce("notification for queue \(index), which does not exist; ignored")
    }
    guard status & Status.driverOK != 0, status & Status.needsReset == 0 else {
      return warnOnce("notification before DRIVER_OK or while the device needs a reset; ignored")
    }
    guard queues[index].isReady else {
      return warnOnce("notification for queue \(index), which is not enabled; ignored")
    }
    do { try device.queueNotified(index) } catch { deviceFailed(error) }
  }

  public func queueUsed(_ index: Int) {
    let q = queues[index]
    do {
      if try q.needsInterrupt() { interrupt(vector: q.msixVector, isrBit: 1) }
    } catch {
      deviceFailed(error)
    }
  }

  public func deviceFailed(_ error: VirtqueueError) {
    warnOnce("device needs a reset: \(error)")
    guard status & Status.needsReset == 0 else { return }
    status |= Status.needsReset
    // A configuration-change interrupt tells the driver to look at the status (§2.1.2).
    interrupt(vector: configVector, isrBit: 2)
  }

  private func interrupt(vector: UInt16, isrBit: UInt8) {
    if msix.enabled {
      if vector != Self.noVector { msix.signal(Int(vector)) }
      return
    }
    isr |= isrBit
    // Command bit 10 is INTx disable.
    if command & (1 << 10) == 0 { intx?.set(true) }
  }

  // MARK: PCI configuration access window (§4.1.4.9)

  private var windowAccess: (bar: Int, offset: UInt64, size: Int)? {
    let bar = Int(bytes[pciConfigCap + 4])
    let offset = UInt64(get32(pciConfigCap + 8))
    let length = Int(get32(pciConfigCap + 12))
    guard [1, 2, 4].contains(length), offset % UInt64(length) == 0 else { return nil }
    return (bar, offset, length)
  }

  public override func configRead(offset: UInt8, size: Int) -> UInt32 {
    let data = pciConfigCap + 16
    if Int(offset) >= data && Int(offset) < data + 4, let w = windowAccess {
      let v = UInt32(truncatingIfNeeded: barRead(bar: w.bar, offset: w.offset, size: w.size))
      return v >> (8 * UInt32(Int(offset) - data))
    }
    return super.configRead(offset: offset, size: size)
  }

  private func pciConfigDataWritten() {
    guard let w = windowAccess else { return }
    barWrite(bar: w.bar, offset: w.offset, size: w.size, value: UInt64(get32(pciConfigCap + 16)))
  }
}
