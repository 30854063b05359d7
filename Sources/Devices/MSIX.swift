/// Where a device's message-signalled interrupts go: a write of `data` to
/// `address` (0xFEExxxxx for the local APICs). The interpreter's platform
/// decodes it for its local APIC; an engine with an in-kernel APIC would
/// signal the message to the kernel.
public protocol MSIDelivery: AnyObject {
  func deliver(address: UInt64, data: UInt32)
}

extension IOAPICMessage {
  /// Decodes an x86 MSI (address 0xFEE<dest><rh><dm>x, data <tm><dlm><vector>);
  /// nil for an address outside the interrupt window, which real hardware
  /// would treat as a memory write and we drop. MSIs are edges: no EOI goes back.
  public init?(msiAddress address: UInt64, data: UInt32) {
    guard address >> 20 == 0xFEE else { return nil }
    self.init(
      vector: UInt8(truncatingIfNeeded: data), deliveryMode: UInt8((data >> 8) & 7),
      logicalDestination: address & (1 << 2) != 0, levelTriggered: false,
      destination: UInt8(truncatingIfNeeded: address >> 12))
  }
}

/// An MSI-X capability with its vector table and pending-bit array (PCI
/// Local Bus 3.0, section 6.8.2): the state machine a PCI device embeds.
///
/// The device calls `signal(_:)` for an interrupt; a masked vector (by its
/// own mask bit or the function mask) sets its pending bit instead, and the
/// message goes out when the guest unmasks it. The device forwards accesses
/// to its BARs through `barRead`/`barWrite`, which answer for the table and
/// PBA ranges and return nil/false elsewhere.
public final class MSIXCapability {
  public struct Entry: Equatable {
    public var address: UInt64 = 0
    public var data: UInt32 = 0
    /// Vector control bit 0; every vector starts masked.
    public var masked = true
  }

  public static let capabilityID: UInt8 = 0x11
  public static let entrySize: UInt64 = 16
  public static let maxVectors = 2048

  public let vectorCount: Int
  public let tableBAR: Int
  public let tableOffset: UInt64
  public let pbaBAR: Int
  public let pbaOffset: UInt64
  /// Offset of the capability in config space.
  public let capabilityOffset: Int
  public private(set) var entries: [Entry]
  private var pending: [UInt64]
  public private(set) var enabled = false
  public private(set) var functionMasked = false
  private weak var config: PCIConfigSpace?
  public weak var delivery: MSIDelivery?

  public enum Error: Swift.Error, Equatable, CustomStringConvertible {
    case badVectorCount(Int)
    case misaligned(String)
    case overlap
    public var description: String {
      switch self {
      case .badVectorCount(let n): return "MSI-X: \(n) vectors (1-\(MSIXCapability.maxVectors))"
      case .misaligned(let what): return "MSI-X: \(what) must be 8-byte aligned"
      case .overlap: return "MSI-X: the table and the PBA overlap"
      }
    }
  }

  /// Adds the capability to `config`. The table and the PBA must lie inside
  /// BARs the device declared (the caller checks the sizes).
  public init(
    vectorCount: Int, config: PCIConfigSpace, tableBAR: Int, tableOffset: UInt64, pbaBAR: Int,
    pbaOffset: UInt64, delivery: MSIDelivery? = nil
  ) throws {
    guard vectorCount >= 1, vectorCount <= MSIXCapability.maxVectors else {
      throw Error.badVectorCount(vectorCount)
    }
    guard tableOffset & 7 == 0, pbaOffset & 7 == 0 else {
      throw Error.misaligned("the table and PBA offsets")
    }
    let tableEnd = tableOffset + UInt64(vectorCount) * MSIXCapability.entrySize
    let pbaEnd = pbaOffset + UInt64((vectorCount + 63) / 64 * 8)
    if tableBAR == pbaBAR && tableOffset < pbaEnd && pbaOffset < tableEnd { throw Error.overlap }
    self.vectorCount = vectorCount
    self.tableBAR = tableBAR
    self.tableOffset = tableOffset
    self.pbaBAR = pbaBAR
    self.pbaOffset = pbaOffset
    self.delivery = delivery
    entries = Array(repeating: Entry(), count: vectorCount)
    pending = Array(repeating: 0, count: (vectorCount + 63) / 64)
    let control = UInt16(vectorCount - 1)
    var body: [UInt8] = [UInt8(control & 0xFF), UInt8(control >> 8)]
    body += MSIXCapability.le32(UInt32(truncatingIfNeeded: tableOffset) | UInt32(tableBAR))
    body += MSIXCapability.le32(UInt32(truncatingIfNeeded: pbaOffset) | UInt32(pbaBAR))
    // Only the enable (bit 15) and function-mask (bit 14) bits are the guest's.
    capabilityOffset = try config.addCapability(
      id: MSIXCapability.capabilityID, body: body, writableBody: [0, 0xC0])
    self.config = config
    let at = capabilityOffset
    config.observeWrites((at + 2)..<(at + 4)) { [weak self] in self?.controlWritten() }
  }

  /// Byte ranges of the table and PBA inside their BARs.
  public var tableRange: Range<UInt64> {
    tableOffset..<(tableOffset + UInt64(vectorCount) * MSIXCapability.entrySize)
  }
  public var pbaRange: Range<UInt64> { pbaOffset..<(pbaOffset + UInt64(pending.count * 8)) }

  public func isPending(_ vector: Int) -> Bool {
    guard vector >= 0, vector < vectorCount else { return false }
    return pending[vector / 64] & (1 << UInt64(vector % 64)) != 0
  }

  /// Raises `vector`. Returns false when MSI-X is disabled (the device uses
  /// INTx instead) or the vector does not exist; true when the message was
  /// sent or left pending under a mask.
  @discardableResult
  public func signal(_ vector: Int) -> Bool {
    guard enabled, vector >= 0, vector < vectorCount else { return false }
    if functionMasked || entries[vector].masked {
      pending[vector / 64] |= 1 << UInt64(vector % 64)
    } else {
      send(vector)
    }
    return true
  }

  private func send(_ vector: Int) {
    let e = entries[vector]
    delivery?.deliver(address: e.address, data: e.data)
  }

  /// Sends every pending vector that is no longer masked.
  private func flushPending() {
    guard enabled, !functionMasked else { return }
    for v in 0..<vectorCount where isPending(v) && !entries[v].masked {
      pending[v / 64] &= ~(1 << UInt64(v % 64))
      send(v)
    }
  }

  private func controlWritten() {
    guard let config else { return }
    let control = config.get16(capabilityOffset + 2)
    enabled = control & (1 << 15) != 0
    functionMasked = control & (1 << 14) != 0
    flushPending()
  }

  // MARK: BAR accesses

  /// A read of `bar` at `offset`, or nil if it is not the table or the PBA.
  /// Accesses must be naturally aligned dwords or qwords; others read as 0.
  public func barRead(bar: Int, offset: UInt64, size: Int) -> UInt64? {
    if bar == tableBAR, tableRange.contains(offset) {
      guard aligned(offset, size) else { return 0 }
      let rel = offset - tableOffset
      let lo = tableDword(Int(rel / 16), Int(rel % 16) / 4)
      guard size == 8 else { return UInt64(lo) }
      return UInt64(lo) | UInt64(tableDword(Int(rel / 16), Int(rel % 16) / 4 + 1)) << 32
    }
    if bar == pbaBAR, pbaRange.contains(offset) {
      guard aligned(offset, size) else { return 0 }
      let q = pending[Int((offset - pbaOffset) / 8)]
      return size == 8 ? q : (q >> ((offset & 4) * 8)) & 0xFFFF_FFFF
    }
    return nil
  }

  /// A write to `bar` at `offset`; false if it is not the table or the PBA.
  /// The PBA is read-only; misaligned or odd-sized writes are dropped.
  public func barWrite(bar: Int, offset: UInt64, size: Int, value: UInt64) -> Bool {
    if bar == tableBAR, tableRange.contains(offset) {
      guard aligned(offset, size) else { return true }
      let rel = offset - tableOffset
      let vector = Int(rel / 16)
      setTableDword(vector, Int(rel % 16) / 4, UInt32(truncatingIfNeeded: value))
      if size == 8 { setTableDword(vector, Int(rel % 16) / 4 + 1, UInt32(value >> 32)) }
      flushPending()
      return true
    }
    return bar == pbaBAR && pbaRange.contains(offset)
  }

  private func aligned(_ offset: UInt64, _ size: Int) -> Bool {
    (size == 4 || size == 8) && offset % UInt64(size) == 0
  }

  private func tableDword(_ vector: Int, _ index: Int) -> UInt32 {
    let e = entries[vector]
    switch index {
    case 0: return UInt32(truncatingIfNeeded: e.address)
    case 1: return UInt32(e.address >> 32)
    case 2: return e.data
    default: return e.masked ? 1 : 0
    }
  }

  private func setTableDword(_ vector: Int, _ index: Int, _ v: UInt32) {
    switch index {
    case 0: entries[vector].address = (entries[vector].address & ~0xFFFF_FFFF) | UInt64(v & ~3)
    case 1: entries[vector].address = (entries[vector].address & 0xFFFF_FFFF) | UInt64(v) << 32
    case 2: entries[vector].data = v
    default: entries[vector].masked = v & 1 != 0
    }
  }

  private static func le32(_ v: UInt32) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
  }
}
