/// A function on the PCI bus: 256 bytes of configuration space.
public protocol PCIFunction: AnyObject {
  func configRead(offset: UInt8, size: Int) -> UInt32
  func configWrite(offset: UInt8, size: Int, value: UInt32)
}

/// PCI configuration mechanism #1 (ports 0xCF8 address, 0xCFC-0xCFF data) for
/// bus 0, as on a PC. Absent functions read all-ones, which is how guests
/// enumerate. Function 00:00.0 is the host bridge.
public final class PCIHost: PortIODevice {
  private var address: UInt32 = 0
  /// Functions by (device << 3 | function) on bus 0.
  private var functions: [Int: PCIFunction] = [:]

  public init() {
    functions[0] = PCIHostBridge()
  }

  public func register(on bus: PortIOBus) throws {
    try bus.register(self, ports: 0xCF8...0xCFF, name: "PCI host (config mechanism 1)")
  }

  /// Places a function at 00:device.function.
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
  }

  private var selected: (PCIFunction, UInt8)? {
    guard address & 0x8000_0000 != 0 else { return nil }
    let bus = (address >> 16) & 0xFF
    guard bus == 0 else { return nil }
    let key = Int((address >> 8) & 0xFF)
    guard let f = functions[key] else { return nil }
    return (f, UInt8(truncatingIfNeeded: address & 0xFC))
  }

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    if offset < 4 {
      return offset == 0 && size == 4 ? address : UInt32(truncatingIfNeeded: allOnes(size))
    }
    guard let (f, reg) = selected else { return UInt32(truncatingIfNeeded: allOnes(size)) }
    return f.configRead(offset: reg &+ UInt8(offset - 4), size: size)
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    if offset < 4 {
      // Only a 32-bit write to 0xCF8 sets the address; byte writes there are other chipset ports.
      if offset == 0 && size == 4 { address = value & 0x80FF_FFFC }
      return
    }
    guard let (f, reg) = selected else { return }
    f.configWrite(offset: reg &+ UInt8(offset - 4), size: size, value: value)
  }
}

/// A plain configuration space backed by bytes, with writable masks.
open class PCIConfigSpace: PCIFunction {
  public var bytes = [UInt8](repeating: 0, count: 256)
  /// Bits the guest may change, per byte.
  public var writable = [UInt8](repeating: 0, count: 256)

  public init(vendor: UInt16, device: UInt16, classCode: UInt32, revision: UInt8 = 0) {
    set16(0x00, vendor)
    set16(0x02, device)
    bytes[0x08] = revision
    bytes[0x09] = UInt8(classCode & 0xFF)
    bytes[0x0A] = UInt8(classCode >> 8 & 0xFF)
    bytes[0x0B] = UInt8(classCode >> 16 & 0xFF)
    writable[0x04] = 0x07  // command: I/O, memory, bus master
    writable[0x0C] = 0xFF  // cache line size
    writable[0x3C] = 0xFF  // interrupt line
  }

  public func set16(_ o: Int, _ v: UInt16) {
    bytes[o] = UInt8(v & 0xFF)
    bytes[o + 1] = UInt8(v >> 8)
  }

  open func configRead(offset: UInt8, size: Int) -> UInt32 {
    var v: UInt32 = 0
    for i in 0..<size where Int(offset) + i < 256 {
      v |= UInt32(bytes[Int(offset) + i]) << (8 * UInt32(i))
    }
    return v
  }

  open func configWrite(offset: UInt8, size: Int, value: UInt32) {
    for i in 0..<size where Int(offset) + i < 256 {
      let o = Int(offset) + i
      let b = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))
      bytes[o] = (bytes[o] & ~writable[o]) | (b & writable[o])
    }
  }
}

/// Host bridge at 00:00.0, identifying as the i440FX like QEMU's PC machine.
final class PCIHostBridge: PCIConfigSpace {
  init() {
    super.init(vendor: 0x8086, device: 0x1237, classCode: 0x06_0000, revision: 2)
  }
}
