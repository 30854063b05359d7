/// A guest-physical address: what the guest's page tables (or a non-paging
/// guest) produce. Distinct from host-physical so the two cannot be mixed up.
public struct GuestPhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable,
  CustomStringConvertible
{
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ value: UInt64) { self.rawValue = value }
  public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
  public static func + (a: Self, b: UInt64) -> Self { Self(a.rawValue &+ b) }
  public var description: String { "GPA 0x" + String(rawValue, radix: 16) }
  /// Guest frame number (4 KiB).
  public var frameNumber: UInt64 { rawValue >> 12 }
  public var pageOffset: UInt64 { rawValue & 0xFFF }
}

/// A host-physical address: an offset into the VMM's host frame pool.
/// It plays the role of machine memory when the VMM models nested or shadow paging.
public struct HostPhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable,
  CustomStringConvertible
{
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ value: UInt64) { self.rawValue = value }
  public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
  public static func + (a: Self, b: UInt64) -> Self { Self(a.rawValue &+ b) }
  public var description: String { "HPA 0x" + String(rawValue, radix: 16) }
  public var frameNumber: UInt64 { rawValue >> 12 }
}

public let pageSize: UInt64 = 4096

public enum MemoryError: Error, Equatable, CustomStringConvertible {
  /// The access [address, address+length) is not entirely inside guest RAM.
  case outsideRAM(GuestPhysicalAddress, length: Int)
  /// The host could not provide the memory (mmap failed).
  case hostAllocationFailed(bytes: UInt64, errno: Int32)
  /// The frame pool has no frame left.
  case poolExhausted(frames: Int)
  case invalidSize(String)

  public var description: String {
    switch self {
    case .outsideRAM(let a, let len):
      return "access of \(len) bytes at \(a) is outside guest RAM"
    case .hostAllocationFailed(let bytes, let e):
      return "host could not allocate \(bytes) bytes of memory (errno \(e))"
    case .poolExhausted(let frames):
      return "host frame pool exhausted (\(frames) frames)"
    case .invalidSize(let s): return s
    }
  }
}
