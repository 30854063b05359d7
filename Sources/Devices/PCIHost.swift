import Logging

/// A function on the PCI bus: 256 bytes of configuration space.
public protocol PCIFunction: AnyObject {
  func configRead(offset: UInt8, size: Int) -> UInt32
  func configWrite(offset: UInt8, size: Int, value: UInt32)
  /// Memory BARs the function decodes now (memory space enabled, address set).
  /// The host maps exactly these on the MMIO bus after every config write.
  var decodedBARs: [PCIBARMapping] { get }
}

extension PCIFunction {
  public var decodedBARs: [PCIBARMapping] { [] }
}

/// A PCI device with memory BARs: what a virtio-pci transport implements.
/// `bar` is the BAR index (0-5; the low index of a 64-bit pair), `offset` is
/// relative to the BAR's base, so the device never sees where the guest put it.
public protocol PCIDevice: PCIFunction {
  func barRead(bar: Int, offset: UInt64, size: Int) -> UInt64
  func barWrite(bar: Int, offset: UInt64, size: Int, value: UInt64)
}

/// One BAR as currently decoded: index, guest-physical base and size.
public struct PCIBARMapping: Equatable, Sendable {
  public var index: Int
  public var base: UInt64
  public var size: UInt64

  public init(index: Int, base: UInt64, size: UInt64) {
    self.index = index
    self.base = base
    self.size = size
  }
}

/// PCI configuration mechanism #1 (ports 0xCF8 address, 0xCFC-0xCFF data) for
/// bus 0, as on a PC. Absent functions read all-ones, which is how guests
/// enumerate. Function 00:00.0 is the host bridge.
///
/// With an MMIO bus, the host keeps each function's decoded BARs mapped there:
/// when the guest moves a BAR or toggles memory decoding, the old range is
/// unregistered and the new one registered. A BAR the guest places over
/// another device's range stays unmapped (logged once) rather than shadowing it.
public final class PCIHost: PortIODevice {
  var address: UInt32 = 0
  /// Functions by (device << 3 | function) on bus 0.
  var functions: [Int: PCIFunction] = [:]
  private let mmioBus: MMIOBus?
  private let logger: Logger
  /// BAR windows registered on the MMIO bus, per function key.
  private var windows: [Int: [PCIBARWindow]] = [:]

  public init(mmioBus: MMIOBus? = nil, logger: Logger = Logger(label: "swiftvmm.pci")) {
    self.mmioBus = mmioBus
    self.logger = logger
    functions[0] = PCIHostBridge()
  }

  public func register(on bus: PortIOBus, ports: ClosedRange<UInt16> = 0xCF8...0xCFF) throws {
    try bus.register(self, ports: ports, name: "PCI host (config mechanism 1)")
  }

  /// Places a function at 00:device.function and maps the BARs it already decodes.
  public func attach(_ f: PCIFunction, device: Int, function: Int = 0) throws {
    guard (0..<32).contains(device), (0..<8).contains(function) else {
      throw BusError.emptyRange("PCI slot \(device).\(function) out of range")
    }
    let key = device << 3 | function
    guard functions[key] == nil else {
      throw BusError.overlap(
        new: "PCI 00:\(device).\(function)", existing: "a PCI function", at: UInt64(key))
    }
    functions[key] = f
    remap(key)
  }

  /// The function at 00:device.function, if any.
  public func function(device: Int, function: Int = 0) -> PCIFunction? {
    functions[device << 3 | function]
  }

  private var selected: (key: Int, f: PCIFunction, reg: UInt8)? {
    guard address & 0x8000_0000 != 0 else { return nil }
    let bus = (address >> 16) & 0xFF
    guard bus == 0 else { return nil }
    let key = Int((address >> 8) & 0xFF)
    guard let f = functions[key] else { return nil }
    return (key, f, UInt8(truncatingIfNeeded: address & 0xFC))
  }

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    if offset < 4 {
      return offset == 0 && size == 4 ? address : UInt32(truncatingIfNeeded: allOnes(size))
    }
    guard let s = selected else { return UInt32(truncatingIfNeeded: allOnes(size)) }
    return s.f.configRead(offset: s.reg &+ UInt8(offset - 4), size: size)
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    if offset < 4 {
      // Only a 32-bit write to 0xCF8 sets the address; byte writes there are other chipset ports.
      if offset == 0 && size == 4 { address = value & 0x80FF_FFFC }
      return
    }
    guard let s = selected else { return }
    s.f.configWrite(offset: s.reg &+ UInt8(offset - 4), size: size, value: value)
    remap(s.key)
  }

  /// Brings the MMIO bus in line with what function `key` decodes.
  func remap(_ key: Int) {
    guard let mmioBus, let f = functions[key] else { return }
    let wanted = f.decodedBARs
    let current = windows[key] ?? []
    if current.map(\.mapping) == wanted { return }
    for w in current { mmioBus.unregister(w) }
    guard let device = f as? PCIDevice else {
      windows[key] = []
      return
    }
    var mapped: [PCIBARWindow] = []
    for m in wanted {
      let w = PCIBARWindow(device: device, mapping: m)
      let name = "PCI 00:\(key >> 3).\(key & 7) BAR\(m.index)"
      do {
        try mmioBus.register(w, base: m.base, size: m.size, name: name)
        mapped.append(w)
      } catch {
        logger.debug("\(name) left unmapped: \(error)")
      }
    }
    windows[key] = mapped
  }
}

/// Forwards one BAR's MMIO range to its device, with BAR-relative offsets.
final class PCIBARWindow: MMIODevice {
  private weak var device: PCIDevice?
  let mapping: PCIBARMapping

  init(device: PCIDevice, mapping: PCIBARMapping) {
    self.device = device
    self.mapping = mapping
  }

  func mmioRead(offset: UInt64, size: Int) -> UInt64 {
    device?.barRead(bar: mapping.index, offset: offset, size: size) ?? allOnes(size)
  }

  func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
    device?.barWrite(bar: mapping.index, offset: offset, size: size, value: value)
  }
}

/// A memory BAR's shape. Sizes are powers of two of at least 16 bytes; the
/// guest sizes a BAR by writing all-ones and reading back the writable bits.
public struct PCIBARDescriptor: Equatable, Sendable {
  public var size: UInt64
  public var is64Bit: Bool
  public var prefetchable: Bool

  public init(size: UInt64, is64Bit: Bool = false, prefetchable: Bool = false) {
    self.size = size
    self.is64Bit = is64Bit
    self.prefetchable = prefetchable
  }
}

public enum PCIConfigError: Error, Equatable, CustomStringConvertible {
  case badBAR(index: Int, why: String)
  case capabilitySpaceFull(id: UInt8, length: Int)

  public var description: String {
    switch self {
    case .badBAR(let i, let why): return "PCI BAR\(i): \(why)"
    case .capabilitySpaceFull(let id, let n):
      return "PCI capability 0x\(String(id, radix: 16)) (\(n) bytes) does not fit in config space"
    }
  }
}

/// A plain configuration space backed by bytes, with writable masks, memory
/// BARs and a capability list.
open class PCIConfigSpace: PCIFunction {
  public var bytes = [UInt8](repeating: 0, count: 256)
  /// Bits the guest may change, per byte.
  public var writable = [UInt8](repeating: 0, count: 256)
  /// Declared BARs by index (a 64-bit BAR also occupies index + 1).
  public private(set) var bars = [PCIBARDescriptor?](repeating: nil, count: 6)
  /// Next free byte for a capability (they follow the standard header).
  private var nextCapability = 0x40
  private var lastCapability: Int?
  /// Called after a guest write that touched [offset, offset+size).
  private var writeObservers: [(range: Range<Int>, handler: () -> Void)] = []

  public static let commandMemorySpace: UInt16 = 1 << 1
  public static let statusCapabilityList: UInt16 = 1 << 4

  public init(vendor: UInt16, device: UInt16, classCode: UInt32, revision: UInt8 = 0) {
    set16(0x00, vendor)
    set16(0x02, device)
    bytes[0x08] = revision
    bytes[0x09] = UInt8(classCode & 0xFF)
    bytes[0x0A] = UInt8(classCode >> 8 & 0xFF)
    bytes[0x0B] = UInt8(classCode >> 16 & 0xFF)
    writable[0x04] = 0x07  // command: I/O, memory, bus master
    writable[0x05] = 0x04  // command: INTx disable
    writable[0x0C] = 0xFF  // cache line size
    writable[0x3C] = 0xFF  // interrupt line
  }

  public func set16(_ o: Int, _ v: UInt16) {
    bytes[o] = UInt8(v & 0xFF)
    bytes[o + 1] = UInt8(v >> 8)
  }

  public func set32(_ o: Int, _ v: UInt32) {
    for i in 0..<4 { bytes[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
  }

  public func get16(_ o: Int) -> UInt16 { UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8 }

  public func get32(_ o: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 | UInt32(bytes[o + $1]) << (8 * UInt32($1)) }
  }

  public var command: UInt16 { get16(0x04) }

  /// Interrupt pin the function uses: 1 = INTA# ... 4 = INTD#, 0 = none.
  public var interruptPin: UInt8 {
    get { bytes[0x3D] }
    set { bytes[0x3D] = newValue }
  }

  /// Declares a memory BAR. Its address starts at 0 (unassigned); the device
  /// manager or the guest places it.
  public func declareBAR(_ index: Int, _ d: PCIBARDescriptor) throws {
    let slots = d.is64Bit ? 2 : 1
    guard index >= 0, index + slots <= 6 else {
      throw PCIConfigError.badBAR(index: index, why: "index out of range")
    }
    guard d.size >= 16, d.size & (d.size - 1) == 0, d.is64Bit || d.size <= 1 << 31 else {
      throw PCIConfigError.badBAR(
        index: index, why: "size 0x\(String(d.size, radix: 16)) is not a power of two in range")
    }
    guard bars[index] == nil, !(d.is64Bit && bars[index + 1] != nil),
      index == 0 || bars[index - 1]?.is64Bit != true
    else { throw PCIConfigError.badBAR(index: index, why: "already declared") }
    bars[index] = d
    let o = 0x10 + 4 * index
    let flags: UInt32 = (d.is64Bit ? 0b100 : 0) | (d.prefetchable ? 0b1000 : 0)
    set32(o, flags)
    // The address bits at or above the size are writable; the rest read as zero.
    setWritable32(o, UInt32(truncatingIfNeeded: ~(d.size - 1)) & ~0xF)
    if d.is64Bit {
      set32(o + 4, 0)
      setWritable32(o + 4, UInt32(truncatingIfNeeded: ~(d.size - 1) >> 32))
    }
  }

  private func setWritable32(_ o: Int, _ mask: UInt32) {
    for i in 0..<4 { writable[o + i] = UInt8(truncatingIfNeeded: mask >> (8 * UInt32(i))) }
  }

  /// The address BAR `index` holds (both halves for a 64-bit BAR).
  public func barAddress(_ index: Int) -> UInt64? {
    guard let d = bars[index] else { return nil }
    let o = 0x10 + 4 * index
    var a = UInt64(get32(o) & ~0xF)
    if d.is64Bit { a |= UInt64(get32(o + 4)) << 32 }
    return a
  }

  /// Sets a BAR's address as firmware would.
  public func setBARAddress(_ index: Int, _ address: UInt64) {
    guard let d = bars[index] else { return }
    let o = 0x10 + 4 * index
    let flags = get32(o) & 0xF
    set32(o, UInt32(truncatingIfNeeded: address & ~(d.size - 1)) | flags)
    if d.is64Bit { set32(o + 4, UInt32(truncatingIfNeeded: (address & ~(d.size - 1)) >> 32)) }
  }

  public var decodedBARs: [PCIBARMapping] {
    guard command & PCIConfigSpace.commandMemorySpace != 0 else { return [] }
    var out: [PCIBARMapping] = []
    for (i, d) in bars.enumerated() {
      guard let d, let a = barAddress(i), a != 0 else { continue }
      // A BAR being sized holds all-ones in its address bits: not a real placement.
      let top = d.is64Bit ? UInt64.max : 0xFFFF_FFFF
      guard a <= top - (d.size - 1), a | (d.size - 1) != top else { continue }
      out.append(PCIBARMapping(index: i, base: a, size: d.size))
    }
    return out
  }

  /// Appends a capability (`id`, then `body` after the next pointer) to the
  /// list and returns its offset. `writableBody` masks, byte for byte, what
  /// the guest may change in the body.
  @discardableResult
  public func addCapability(id: UInt8, body: [UInt8], writableBody: [UInt8] = []) throws -> Int {
    let length = (2 + body.count + 3) & ~3
    let at = nextCapability
    guard at + length <= 256 else {
      throw PCIConfigError.capabilitySpaceFull(id: id, length: 2 + body.count)
    }
    bytes[at] = id
    bytes[at + 1] = 0
    for (i, b) in body.enumerated() { bytes[at + 2 + i] = b }
    for (i, m) in writableBody.prefix(body.count).enumerated() { writable[at + 2 + i] = m }
    if let last = lastCapability {
      bytes[last + 1] = UInt8(at)
    } else {
      bytes[0x34] = UInt8(at)
      set16(0x06, get16(0x06) | PCIConfigSpace.statusCapabilityList)
    }
    lastCapability = at
    nextCapability = at + length
    return at
  }

  /// Runs `handler` after every guest config write that touches `range`.
  public func observeWrites(_ range: Range<Int>, _ handler: @escaping () -> Void) {
    writeObservers.append((range, handler))
  }

  open func configRead(offset: UInt8, size: Int) -> UInt32 {
    var v: UInt32 = 0
    for i in 0..<size where Int(offset) + i < 256 {
      v |= UInt32(bytes[Int(offset) + i]) << (8 * UInt32(i))
    }
    return v
  }

  open func configWrite(offset: UInt8, size: Int, value: UInt32) {
    let start = Int(offset)
    let end = min(256, start + size)
    for o in start..<end {
      let b = UInt8(truncatingIfNeeded: value >> (8 * UInt32(o - start)))
      bytes[o] = (bytes[o] & ~writable[o]) | (b & writable[o])
    }
    for w in writeObservers where w.range.overlaps(start..<end) { w.handler() }
  }
}

/// Host bridge at 00:00.0, identifying as the i440FX like QEMU's PC machine.
final class PCIHostBridge: PCIConfigSpace {
  init() {
    super.init(vendor: 0x8086, device: 0x1237, classCode: 0x06_0000, revision: 2)
  }
}
