/// One interrupt message from the IOAPIC to the local APIC(s).
public struct IOAPICMessage: Equatable, Sendable {
  public var vector: UInt8
  /// 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT.
  public var deliveryMode: UInt8
  public var logicalDestination: Bool
  public var levelTriggered: Bool
  public var destination: UInt8
}

/// An 82093AA-style I/O APIC (version 0x20, 24 pins) at 0xFEC00000:
/// IOREGSEL at offset 0x00, IOWIN at 0x10, EOI register at 0x40.
///
/// Pins are driven through `setLevel(irq:high:)` with `high` meaning asserted
/// (polarity bits are stored for the guest, as in QEMU). Unmasked entries
/// send an `IOAPICMessage` to `sink`; `connect(to:)` wires the local APICs.
public final class IOAPIC: MMIODevice, InterruptLines {
  public static let defaultBase: UInt64 = 0xFEC0_0000
  public static let size: UInt64 = 0x1000
  public static let pinCount = 24

  /// Where interrupt messages go (set by `connect(to:)`).
  public var sink: ((IOAPICMessage) -> Void)?

  var select: UInt8 = 0
  var id: UInt32
  /// Redirection table; bit 12 (delivery status) and 14 (remote IRR) are ours.
  public internal(set) var redirection = [UInt64](repeating: 1 << 16, count: IOAPIC.pinCount)
  /// Asserted input lines.
  var lineLevels: UInt32 = 0
  /// Edges waiting for delivery. An edge on a masked pin is lost, as the
  /// 82093AA manual says and QEMU does (kvm-unit-tests' ioapic test).
  var pendingEdges: UInt32 = 0

  private enum RTE {
    static let deliveryStatus: UInt64 = 1 << 12
    static let remoteIRR: UInt64 = 1 << 14
    static let level: UInt64 = 1 << 15
    static let masked: UInt64 = 1 << 16
  }

  public init(id: UInt8 = 0) {
    self.id = UInt32(id & 0x0F) << 24
  }

  public func register(on bus: MMIOBus, base: UInt64 = IOAPIC.defaultBase) throws {
    try bus.register(self, base: base, size: IOAPIC.size, name: "IOAPIC")
  }

  /// Sends messages to the APICs on `bus`, and routes their level-triggered EOIs back here.
  public func connect(to bus: APICBus) {
    // Strong: the bus and its APICs never hold the IOAPIC (their EOI hook is weak).
    sink = { m in bus.accept(m) }
    for lapic in bus.apics {
      lapic.onLevelTriggeredEOI = { [weak self] v in self?.endOfInterrupt(vector: v) }
    }
  }

  // MARK: Inputs

  public func setLevel(irq: Int, high: Bool) {
    guard irq >= 0, irq < IOAPIC.pinCount else { return }
    let bit = UInt32(1) << UInt32(irq)
    let wasHigh = lineLevels & bit != 0
    if high { lineLevels |= bit } else { lineLevels &= ~bit }
    let e = redirection[irq]
    if e & RTE.level != 0 {
      if high { service(irq) }
    } else if high && !wasHigh && e & RTE.masked == 0 {
      pendingEdges |= bit
      service(irq)
    }
  }

  /// End of interrupt for `vector`: level entries with that vector drop
  /// remote IRR and fire again if their line is still asserted.
  public func endOfInterrupt(vector: UInt8) {
    for pin in 0..<IOAPIC.pinCount {
      let e = redirection[pin]
      guard e & RTE.level != 0, e & RTE.remoteIRR != 0, UInt8(truncatingIfNeeded: e) == vector
      else { continue }
      redirection[pin] = e & ~RTE.remoteIRR
      service(pin)
    }
  }

  /// Sends the interrupt for `pin` if one is due.
  private func service(_ pin: Int) {
    let e = redirection[pin]
    guard e & RTE.masked == 0 else { return }
    let bit = UInt32(1) << UInt32(pin)
    if e & RTE.level != 0 {
      guard lineLevels & bit != 0, e & RTE.remoteIRR == 0 else { return }
      redirection[pin] = e | RTE.remoteIRR
    } else {
      guard pendingEdges & bit != 0 else { return }
      pendingEdges &= ~bit
    }
    sink?(
      IOAPICMessage(
        vector: UInt8(truncatingIfNeeded: e), deliveryMode: UInt8((e >> 8) & 7),
        logicalDestination: e & (1 << 11) != 0, levelTriggered: e & RTE.level != 0,
        destination: UInt8(truncatingIfNeeded: e >> 56)))
  }

  // MARK: Registers

  func readRegister(_ index: UInt8) -> UInt32 {
    switch index {
    case 0x00: return id
    case 0x01: return UInt32(IOAPIC.pinCount - 1) << 16 | 0x20
    case 0x02: return id  // arbitration ID
    case 0x10..<(0x10 + UInt8(IOAPIC.pinCount * 2)):
      let e = redirection[Int(index - 0x10) / 2]
      return UInt32(truncatingIfNeeded: index & 1 == 0 ? e : e >> 32)
    default: return 0  // as QEMU's
    }
  }

  func writeRegister(_ index: UInt8, _ v: UInt32) {
    switch index {
    case 0x00: id = v & 0x0F00_0000
    case 0x10..<(0x10 + UInt8(IOAPIC.pinCount * 2)):
      let pin = Int(index - 0x10) / 2
      var e = redirection[pin]
      if index & 1 == 0 {
        let ro = RTE.deliveryStatus | RTE.remoteIRR
        e = (e & 0xFFFF_FFFF_0000_0000) | (e & ro) | (UInt64(v) & ~ro & 0x1_FFFF)
        // An edge-triggered entry has no remote IRR.
        if e & RTE.level == 0 { e &= ~RTE.remoteIRR }
      } else {
        e = (e & 0xFFFF_FFFF) | (UInt64(v & 0xFF00_0000) << 32)
      }
      redirection[pin] = e
      service(pin)
    default: break
    }
  }

  public func mmioRead(offset: UInt64, size: Int) -> UInt64 {
    switch offset {
    case 0x00: return UInt64(select)
    case 0x10...0x13:
      let v = readRegister(select) >> (UInt32(offset & 3) * 8)
      return UInt64(v) & allOnes(min(size, 4))
    default: return 0
    }
  }

  public func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
    switch offset {
    case 0x00: select = UInt8(truncatingIfNeeded: value)
    case 0x10: writeRegister(select, UInt32(truncatingIfNeeded: value))
    case 0x40: endOfInterrupt(vector: UInt8(truncatingIfNeeded: value))
    default: break
    }
  }
}
