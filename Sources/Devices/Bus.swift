import Logging

/// A device reachable through x86 I/O ports. `offset` is relative to the
/// first port the device was registered at.
public protocol PortIODevice: AnyObject {
  func ioRead(offset: UInt16, size: Int) -> UInt32
  func ioWrite(offset: UInt16, size: Int, value: UInt32)
}

/// A device reachable through guest-physical addresses outside RAM.
public protocol MMIODevice: AnyObject {
  func mmioRead(offset: UInt64, size: Int) -> UInt64
  func mmioWrite(offset: UInt64, size: Int, value: UInt64)
}

public enum BusError: Error, Equatable, CustomStringConvertible {
  case overlap(new: String, existing: String, at: UInt64)
  case emptyRange(String)

  public var description: String {
    switch self {
    case .overlap(let n, let e, let a):
      return "cannot register \(n): its range overlaps \(e) at 0x\(String(a, radix: 16))"
    case .emptyRange(let n): return "cannot register \(n): empty range"
    }
  }
}

/// All-ones of `size` bytes: what an access that hits no device reads.
@inline(__always)
func allOnes(_ size: Int) -> UInt64 {
  size >= 8 ? UInt64.max : (UInt64(1) << (UInt64(size) * 8)) &- 1
}

/// The I/O-port bus: 64 Ki ports, each owned by at most one device.
public final class PortIOBus {
  private struct Mapping {
    let name: String
    /// Port that maps to offset 0 (may lie below the registered range).
    let base: UInt16
    let device: PortIODevice
  }
  /// What an access needs, without the name: copying a `Mapping` per access cost a
  /// retain and release of its name and its device. Unowned: `mappings` keeps the device.
  private struct Route {
    let base: UInt16
    unowned(unsafe) let device: PortIODevice
  }
  private var mappings: [Mapping] = []
  /// `routes[i]` is `mappings[i]` for accesses (ports are never unregistered).
  private var routes: [Route] = []
  /// Index+1 into `mappings` for every port; 0 = nothing there. One load per access.
  private var owner = [UInt16](repeating: 0, count: 65536)
  private(set) var warned = BoundedWarnings<UInt16>()
  private let logger: Logger

  public init(logger: Logger = Logger(label: "swiftvmm.pio")) { self.logger = logger }

  /// Registers `ports`; the device sees offsets from `ports.lowerBound - firstOffset`,
  /// so one device can own several disjoint ranges (the i8042 at 0x60 and 0x64).
  public func register(
    _ device: PortIODevice, ports: ClosedRange<UInt16>, name: String, firstOffset: UInt16 = 0
  ) throws {
    for p in ports where owner[Int(p)] != 0 {
      throw BusError.overlap(
        new: name, existing: mappings[Int(owner[Int(p)]) - 1].name, at: UInt64(p))
    }
    mappings.append(Mapping(name: name, base: ports.lowerBound &- firstOffset, device: device))
    routes.append(Route(base: ports.lowerBound &- firstOffset, device: device))
    for p in ports { owner[Int(p)] = UInt16(mappings.count) }
  }

  /// Each registered device once, in registration order (snapshots collect their parts here).
  public var devices: [AnyObject] { uniqueDevices(mappings.map(\.device)) }

  public func read(port: UInt16, size: Int) -> UInt32 {
    let i = Int(owner[Int(port)])
    guard i != 0 else {
      unmapped(port, "read")
      return UInt32(truncatingIfNeeded: allOnes(size))
    }
    let m = routes[i - 1]
    return m.device.ioRead(offset: port &- m.base, size: size)
  }

  public func write(port: UInt16, size: Int, value: UInt32) {
    let i = Int(owner[Int(port)])
    guard i != 0 else { return unmapped(port, "write") }
    let m = routes[i - 1]
    m.device.ioWrite(offset: port &- m.base, size: size, value: value)
  }

  /// One bit per port already through `warned`: a guest polling an empty port (0x80)
  /// then costs a bit test per access, not a set lookup.
  private var quiet = [UInt64](repeating: 0, count: 65536 / 64)

  private func unmapped(_ port: UInt16, _ what: String) {
    let (word, bit) = (Int(port >> 6), UInt64(1) << (port & 63))
    if quiet[word] & bit != 0 { return }
    quiet[word] |= bit
    if warned.firstTime(port, logger: logger, what: "I/O port") {
      logger.debug("unassigned I/O port 0x\(String(port, radix: 16)) (\(what)); reads as all-ones")
    }
  }
}

/// The MMIO bus: non-overlapping guest-physical ranges.
public final class MMIOBus {
  private struct Mapping {
    let name: String
    let range: ClosedRange<UInt64>
    let device: MMIODevice
  }
  /// As `PortIOBus.Route`: an access copies no name and retains no device.
  private struct Route {
    let range: ClosedRange<UInt64>
    unowned(unsafe) let device: MMIODevice
  }
  /// Sorted by address. `routes[i]` is `mappings[i]` for accesses; `mappings` keeps the devices.
  private var mappings: [Mapping] = []
  private var routes: [Route] = []
  private(set) var warned = BoundedWarnings<UInt64>()
  private let logger: Logger

  public init(logger: Logger = Logger(label: "swiftvmm.mmio")) { self.logger = logger }

  public func register(_ device: MMIODevice, base: UInt64, size: UInt64, name: String) throws {
    guard size > 0, base <= UInt64.max - (size - 1) else { throw BusError.emptyRange(name) }
    let range = base...(base + size - 1)
    if let m = mappings.first(where: { $0.range.overlaps(range) }) {
      throw BusError.overlap(new: name, existing: m.name, at: max(m.range.lowerBound, base))
    }
    mappings.append(Mapping(name: name, range: range, device: device))
    mappings.sort { $0.range.lowerBound < $1.range.lowerBound }
    updateRoutes()
  }

  /// Removes every range `device` was registered at (a PCI BAR the guest moved).
  public func unregister(_ device: MMIODevice) {
    mappings.removeAll { $0.device === device }
    updateRoutes()
  }

  private func updateRoutes() {
    routes = mappings.map { Route(range: $0.range, device: $0.device) }
  }

  /// Each registered device once, in registration order.
  public var devices: [AnyObject] { uniqueDevices(mappings.map(\.device)) }

  /// The name of the device at `address`, if any.
  public func name(at address: UInt64) -> String? { find(address).map { mappings[$0].name } }

  /// The index of the range holding `address` (binary search).
  private func find(_ address: UInt64) -> Int? {
    var lo = 0
    var hi = routes.count
    while lo < hi {
      let mid = (lo + hi) / 2
      let r = routes[mid].range
      if address < r.lowerBound {
        hi = mid
      } else if address > r.upperBound {
        lo = mid + 1
      } else {
        return mid
      }
    }
    return nil
  }

  public func read(address: UInt64, size: Int) -> UInt64 {
    guard let i = find(address) else {
      unmapped(address, "read")
      return allOnes(size)
    }
    let m = routes[i]
    return m.device.mmioRead(offset: address - m.range.lowerBound, size: size)
  }

  public func write(address: UInt64, size: Int, value: UInt64) {
    guard let i = find(address) else { return unmapped(address, "write") }
    let m = routes[i]
    m.device.mmioWrite(offset: address - m.range.lowerBound, size: size, value: value)
  }

  private func unmapped(_ address: UInt64, _ what: String) {
    if warned.firstTime(address, logger: logger, what: "MMIO") {
      logger.debug(
        "unassigned MMIO address 0x\(String(address, radix: 16)) (\(what)); reads as all-ones")
    }
  }
}

private func uniqueDevices(_ all: [AnyObject]) -> [AnyObject] {
  var seen = Set<ObjectIdentifier>()
  return all.filter { seen.insert(ObjectIdentifier($0)).inserted }
}
