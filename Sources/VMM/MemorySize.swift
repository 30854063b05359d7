#if canImport(Glibc)
  import Glibc
#endif

/// Guest memory sizes as users write them, as QEMU's `-m` reads them: a bare
/// number is MiB ("256"); K, M, G, T (or KiB, MiB, GiB, TiB) name the unit.
public enum MemorySize {
  public static let minimum: UInt64 = 2 << 20

  public enum ParseError: Error, CustomStringConvertible, Equatable {
    case unparseable(String)
    case zero
    case tooSmall(UInt64)
    case tooLarge(UInt64, host: UInt64)
    case notPageMultiple(UInt64)

    public var description: String {
      switch self {
      case .unparseable(let s):
        return
          "cannot parse memory size '\(s)' (a number of MiB, or with a K, M, G or T suffix, e.g. 512M, 1G)"
      case .zero: return "memory size must not be zero"
      case .tooSmall(let b):
        return "memory size \(b) bytes is below the minimum of \(MemorySize.minimum >> 20) MiB"
      case .tooLarge(let b, let host):
        let size = b == .max ? "beyond 16 EiB" : "\(b >> 20) MiB"
        return "memory size \(size) is larger than this host's \(host >> 20) MiB of physical memory"
      case .notPageMultiple(let b): return "memory size \(b) is not a multiple of 4 KiB"
      }
    }
  }

  public static func parse(_ text: String, hostMemory: UInt64 = hostPhysicalMemory()) throws
    -> UInt64
  {
    let t = text.trimmingCharacters(in: " ")
    guard !t.isEmpty else { throw ParseError.unparseable(text) }
    var digits = Substring(t)
    // "MiB" and "M" alike; a bare number is MiB.
    if digits.hasSuffix("iB") { digits = digits.dropLast(2) }
    var shift: UInt64 = 20
    if let unit = digits.last, !unit.isNumber {
      switch unit {
      case "k", "K": shift = 10
      case "m", "M": shift = 20
      case "g", "G": shift = 30
      case "t", "T": shift = 40
      default: throw ParseError.unparseable(text)
      }
      digits.removeLast()
    } else if digits.count < t.count {
      throw ParseError.unparseable(text)  // "512iB"
    }
    guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
      let n = UInt64(digits)
    else { throw ParseError.unparseable(text) }
    guard n != 0 else { throw ParseError.zero }
    let (bytes, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
    guard !overflow else { throw ParseError.tooLarge(UInt64.max, host: hostMemory) }
    guard bytes % 4096 == 0 else { throw ParseError.notPageMultiple(bytes) }
    guard bytes >= minimum else { throw ParseError.tooSmall(bytes) }
    guard bytes <= hostMemory else { throw ParseError.tooLarge(bytes, host: hostMemory) }
    return bytes
  }

  public static func hostPhysicalMemory() -> UInt64 {
    UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))
  }
}

extension String {
  fileprivate func trimmingCharacters(in c: Character) -> String {
    var s = Substring(self)
    while s.first == c { s.removeFirst() }
    while s.last == c { s.removeLast() }
    return String(s)
  }
}
