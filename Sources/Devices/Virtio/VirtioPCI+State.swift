import Foundation

extension SplitVirtqueue {
  /// Ring addresses and the device's indices; the rings themselves are guest memory.
  public struct State: Codable, Equatable {
    var size: UInt16
    var descriptorTable, driverArea, deviceArea: UInt64
    var msixVector: UInt16
    var isReady, indirectAllowed, eventIndex: Bool
    var lastAvail, used, usedAtLastSignal: UInt16
  }

  var state: State {
    State(
      size: size, descriptorTable: descriptorTable, driverArea: driverArea,
      deviceArea: deviceArea, msixVector: msixVector, isReady: isReady,
      indirectAllowed: indirectAllowed, eventIndex: eventIndex, lastAvail: lastAvail, used: used,
      usedAtLastSignal: usedAtLastSignal)
  }

  /// Takes `s`; an enabled queue is checked as the driver's enable was.
  func apply(_ s: State) throws {
    size = s.size
    descriptorTable = s.descriptorTable
    driverArea = s.driverArea
    deviceArea = s.deviceArea
    msixVector = s.msixVector
    indirectAllowed = s.indirectAllowed
    eventIndex = s.eventIndex
    isReady = false
    if s.isReady { try enable() }
    lastAvail = s.lastAvail
    used = s.used
    usedAtLastSignal = s.usedAtLastSignal
  }
}

extension MSIXCapability {
  public struct State: Codable, Equatable {
    var addresses: [UInt64]
    var data: [UInt32]
    var masked: [Bool]
    var pending: [UInt64]
    var enabled, functionMasked: Bool
  }

  var state: State {
    State(
      addresses: entries.map(\.address), data: entries.map(\.data), masked: entries.map(\.masked),
      pending: pending, enabled: enabled, functionMasked: functionMasked)
  }

  func apply(_ s: State) -> Bool {
    guard s.addresses.count == entries.count, s.data.count == entries.count,
      s.masked.count == entries.count, s.pending.count == pending.count
    else { return false }
    for i in entries.indices {
      entries[i].address = s.addresses[i]
      entries[i].data = s.data[i]
      entries[i].masked = s.masked[i]
    }
    pending = s.pending
    enabled = s.enabled
    functionMasked = s.functionMasked
    return true
  }
}

extension VirtioPCI: CodableSnapshotPart {
  /// The transport's registers, its queues and MSI-X table, and the device's own
  /// state (`VirtioDevice.saveDeviceState`). A device the driver had started
  /// (DRIVER_OK) is started again over the restored queues.
  public struct State: Codable, Equatable {
    var deviceType: UInt16
    var status: UInt8
    var driverFeatures: UInt64
    var isr: UInt8
    var deviceFeatureSelect, driverFeatureSelect: UInt32
    var queueSelect, configVector: UInt16
    var queues: [SplitVirtqueue.State]
    var msix: MSIXCapability.State
    var intxLevel: Bool
    /// Absent in records from before console and network saved their state.
    var device: Data?
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "virtio-pci" }

  public func captureState() -> State {
    State(
      deviceType: device.deviceType.rawValue, status: status, driverFeatures: driverFeatures,
      isr: isr, deviceFeatureSelect: deviceFeatureSelect, driverFeatureSelect: driverFeatureSelect,
      queueSelect: queueSelect, configVector: configVector, queues: queues.map(\.state),
      msix: msix.state, intxLevel: intx?.level ?? false, device: Data(device.saveDeviceState()))
  }

  public func applyState(_ s: State) throws {
    try require(s.deviceType == device.deviceType.rawValue, "device type \(s.deviceType)")
    try require(s.queues.count == queues.count, "\(s.queues.count) queues")
    for (q, qs) in zip(queues, s.queues) {
      do { try q.apply(qs) } catch {
        throw SnapshotStateError.invalid(part: snapshotKind, reason: "\(error)")
      }
    }
    try require(msix.apply(s.msix), "MSI-X table size")
    status = s.status
    driverFeatures = s.driverFeatures
    isr = s.isr
    deviceFeatureSelect = s.deviceFeatureSelect
    driverFeatureSelect = s.driverFeatureSelect
    queueSelect = s.queueSelect
    configVector = s.configVector
    intx?.level = s.intxLevel
    if status & Status.driverOK != 0 {
      device.activate(features: driverFeatures, queues: queues, memory: memory, transport: self)
    }
    try require(
      device.restoreDeviceState(Array(s.device ?? Data())),
      "\(device.deviceType) device state cannot be read")
  }
}

extension PCIHost {
  /// The functions on the bus that have state of their own, by slot.
  public var snapshotFunctions: [SnapshotPart] {
    functions.keys.sorted().compactMap { functions[$0] as? SnapshotPart }
  }
}
