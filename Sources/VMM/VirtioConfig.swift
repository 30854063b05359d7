#if canImport(Glibc)
  import Glibc
#endif

/// One `--disk PATH[,readonly][,id=NAME]`.
public struct DiskSpec: Equatable, Sendable {
  public var path: String
  public var readOnly = false
  /// The serial number the guest reads with GET_ID (/sys/block/vdX/serial).
  public var id: String?

  public init(path: String, readOnly: Bool = false, id: String? = nil) {
    self.path = path
    self.readOnly = readOnly
    self.id = id
  }
}

/// Which device is the guest's console.
public enum ConsoleKind: String, CaseIterable, Sendable {
  case uart
  case virtio
}

public enum VirtioConfigError: Error, Equatable, CustomStringConvertible {
  case malformed(String)
  case missing(String)
  case directory(String)

  public var description: String {
    switch self {
    case .malformed(let s): return s
    case .missing(let p): return "--disk \(p): no such file"
    case .directory(let p): return "--disk \(p): is a directory, not a disk image"
    }
  }
}

/// The virtio devices a VM gets, parsed from the command line in one place.
/// Errors are one line and come before anything boots.
public struct VirtioConfig: Equatable, Sendable {
  public var disks: [DiskSpec] = []
  public var console: ConsoleKind = .uart
  public var entropy = false
  /// `--net`: a virtio-net device and its host back-end, or none.
  public var network: NetworkSpec = .none
  /// The virtio-net device's MAC address.
  public var mac: [UInt8] = NetworkSpec.defaultMAC

  /// Serial numbers longer than this are cut by virtio-blk's GET_ID.
  public static let maxIDLength = 20

  public init() {}

  /// Whether no virtio device is asked for.
  public var isEmpty: Bool { disks.isEmpty && console == .uart && !entropy && network == .none }

  public init(
    disks: [String], console: String?, entropy: Bool, network: String? = nil
  ) throws(VirtioConfigError) {
    if let n = network {
      do { self.network = try NetworkSpec.parse(n) } catch { throw .malformed(error.description) }
    }
    for d in disks { self.disks.append(try VirtioConfig.parseDisk(d)) }
    if let c = console {
      guard let k = ConsoleKind(rawValue: c) else {
        throw .malformed("--console \(c): choose uart or virtio")
      }
      self.console = k
    }
    self.entropy = entropy
    var ids = Set<String>()
    for d in self.disks {
      if let id = d.id, !ids.insert(id).inserted {
        throw .malformed("--disk: id=\(id) is given to two disks")
      }
    }
  }

  /// Parses `PATH[,readonly][,id=NAME]` and checks the path names a file.
  public static func parseDisk(_ spec: String) throws(VirtioConfigError) -> DiskSpec {
    let parts = spec.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    guard let path = parts.first, !path.isEmpty else {
      throw .malformed("--disk '\(spec)': expected PATH[,readonly][,id=NAME]")
    }
    var readOnly = false
    var id: String?
    for p in parts.dropFirst() {
      if p == "readonly" || p == "ro" {
        readOnly = true
      } else if p.hasPrefix("id=") {
        id = String(p.dropFirst(3))
      } else {
        throw .malformed("--disk '\(spec)': unknown option '\(p)' (known: readonly, id=NAME)")
      }
    }
    do {
      return try DiskSpec.validated(path: path, readOnly: readOnly, id: id)
    } catch .malformed(let why) {
      throw .malformed("--disk '\(spec)': \(why)")
    }
  }
}

extension DiskSpec {
  /// A disk whose serial fits virtio-blk's GET_ID and whose path names a file:
  /// the one check for `--disk` and the config file's and API's drives.
  public static func validated(path: String, readOnly: Bool, id: String?) throws(VirtioConfigError)
    -> DiskSpec
  {
    let max = VirtioConfig.maxIDLength
    if let id {
      guard !id.isEmpty, id.utf8.count <= max,
        id.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F })
      else {
        throw .malformed("id must be 1-\(max) printable ASCII characters without spaces")
      }
    }
    var st = stat()
    guard stat(path, &st) == 0 else { throw .missing(path) }
    if st.st_mode & S_IFMT == S_IFDIR { throw .directory(path) }
    return DiskSpec(path: path, readOnly: readOnly, id: id)
  }
}
