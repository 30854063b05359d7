import CHostIO
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The snapshot container: a header, named sections, and a trailer with a
/// CRC-32C over everything before it.
///
/// ```
/// "SVMMSNAP" (8) | format version u32 | flags u32
/// section*: name length u16 | name | payload length u64 | payload
/// trailer: section count u32 | file length u64 | CRC-32C u32
/// ```
/// Integers are little-endian. A reader checks the length and the checksum of the
/// whole file before it hands out a single section, so a truncated or corrupt
/// file is refused before anything is restored.
public enum SnapshotFormat {
  public static let magic: [UInt8] = Array("SVMMSNAP".utf8)
  /// Bumped on any incompatible change to the container or a section's encoding.
  public static let version: UInt32 = 1
  static let headerSize = 16
  static let trailerSize = 16
}

public enum SnapshotError: Error, Equatable, CustomStringConvertible {
  case io(String)
  case notASnapshot(String)
  case versionMismatch(found: UInt32, expected: UInt32)
  case truncated(String)
  case corrupt(String)
  case unsupported(String)

  public var description: String {
    switch self {
    case .io(let s): return "snapshot: \(s)"
    case .notASnapshot(let p): return "\(p) is not a SwiftVMM snapshot (bad magic)"
    case .versionMismatch(let f, let e):
      return "snapshot format version \(f) is not supported (this SwiftVMM reads version \(e))"
    case .truncated(let s): return "snapshot is truncated: \(s)"
    case .corrupt(let s): return "snapshot is corrupt: \(s)"
    case .unsupported(let s): return "cannot snapshot this machine: \(s)"
    }
  }
}

/// Streams sections to `path` (through `path.tmp`, renamed at the end, so a failed
/// save never leaves a half-written file under the real name).
final class SnapshotWriter {
  private let path: String
  private let tmp: String
  private let fd: Int32
  private var crc: UInt32 = 0
  private var length: UInt64 = 0
  private var sections: UInt32 = 0
  private var buffer: [UInt8] = []
  private static let bufferLimit = 1 << 20
  private var closed = false

  init(path: String) throws {
    self.path = path
    tmp = path + ".tmp"
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw SnapshotError.io("cannot create \(tmp): \(errnoText())") }
    buffer.reserveCapacity(SnapshotWriter.bufferLimit)
    try append(SnapshotFormat.magic)
    try appendInteger(SnapshotFormat.version)
    try appendInteger(UInt32(0))
  }

  deinit {
    if !closed {
      close(fd)
      unlink(tmp)
    }
  }

  /// Writes a whole section.
  func section(_ name: String, _ payload: [UInt8]) throws {
    try beginSection(name, length: UInt64(payload.count))
    try append(payload)
  }

  /// Starts a section whose `length` payload bytes follow through `append`.
  func beginSection(_ name: String, length: UInt64) throws {
    let n = Array(name.utf8)
    precondition(n.count <= 0xFFFF)
    try appendInteger(UInt16(n.count))
    try append(n)
    try appendInteger(length)
    sections += 1
  }

  func appendInteger<T: FixedWidthInteger>(_ v: T) throws {
    try withUnsafeBytes(of: v.littleEndian) { try append($0) }
  }

  func append(_ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try append($0) }
  }

  func append(_ bytes: UnsafeRawBufferPointer) throws {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    crc = chostio_crc32c(crc, base, bytes.count)
    length += UInt64(bytes.count)
    if buffer.count + bytes.count > SnapshotWriter.bufferLimit { try flush() }
    if bytes.count >= SnapshotWriter.bufferLimit {
      try writeAll(bytes)
    } else {
      buffer.append(contentsOf: bytes)
    }
  }

  /// Ends the file: trailer, fsync, rename over `path`.
  func finish() throws {
    try appendInteger(sections)
    try appendInteger(length + 12)  // the whole file: what follows is 8 + 4 bytes
    let sum = crc
    try withUnsafeBytes(of: sum.littleEndian) { b in
      buffer.append(contentsOf: b)
    }
    try flush()
    guard fsync(fd) == 0 else { throw SnapshotError.io("cannot write \(tmp): \(errnoText())") }
    close(fd)
    closed = true
    guard rename(tmp, path) == 0 else {
      unlink(tmp)
      throw SnapshotError.io("cannot rename \(tmp) to \(path): \(errnoText())")
    }
  }

  private func flush() throws {
    try buffer.withUnsafeBytes { try writeAll($0) }
    buffer.removeAll(keepingCapacity: true)
  }

  private func writeAll(_ b: UnsafeRawBufferPointer) throws {
    var off = 0
    while off < b.count {
      let n = write(fd, b.baseAddress! + off, b.count - off)
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else { throw SnapshotError.io("cannot write \(tmp): \(errnoText())") }
      off += n
    }
  }
}

/// A snapshot file mapped read-only and checked: length, magic, version, CRC,
/// and section bounds. Sections are views into the mapping.
final class SnapshotReader {
  let path: String
  private let base: UnsafeRawPointer
  private let size: Int
  private(set) var sections: [String: UnsafeRawBufferPointer] = [:]
  private(set) var sectionOrder: [String] = []

  init(path: String) throws {
    self.path = path
    // O_NONBLOCK: a FIFO must not block the caller (the API's queue) until a writer comes.
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { throw SnapshotError.io("cannot open \(path): \(errnoText())") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw SnapshotError.io("cannot stat \(path): \(errnoText())") }
    guard st.st_mode & S_IFMT == S_IFREG else {
      throw SnapshotError.io("\(path) is not a regular file")
    }
    size = Int(st.st_size)
    guard size >= SnapshotFormat.headerSize + SnapshotFormat.trailerSize else {
      if size >= 8,
        let m = try? Self.readPrefix(fd, 8), m != SnapshotFormat.magic
      {
        throw SnapshotError.notASnapshot(path)
      }
      throw SnapshotError.truncated("\(size) bytes")
    }
    // MAP_PRIVATE: the file's pages are read in as they are touched.
    let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
    guard let p, p != MAP_FAILED else {
      throw SnapshotError.io("cannot map \(path): \(errnoText())")
    }
    base = UnsafeRawPointer(p)
    do { try check() } catch {
      munmap(UnsafeMutableRawPointer(mutating: base), size)
      throw error
    }
  }

  deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

  private static func readPrefix(_ fd: Int32, _ n: Int) throws -> [UInt8] {
    var b = [UInt8](repeating: 0, count: n)
    guard pread(fd, &b, n, 0) == n else { throw SnapshotError.io("read") }
    return b
  }

  private func u32(_ o: Int) -> UInt32 {
    UInt32(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt32.self))
  }
  private func u64(_ o: Int) -> UInt64 {
    UInt64(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt64.self))
  }
  private func u16(_ o: Int) -> UInt16 {
    UInt16(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt16.self))
  }

  private func check() throws {
    guard Array(UnsafeRawBufferPointer(start: base, count: 8)) == SnapshotFormat.magic else {
      throw SnapshotError.notASnapshot(path)
    }
    let version = u32(8)
    guard version == SnapshotFormat.version else {
      throw SnapshotError.versionMismatch(found: version, expected: SnapshotFormat.version)
    }
    let t = size - 12
    let declared = u64(t)
    guard declared == UInt64(size) else {
      throw declared > UInt64(size)
        ? SnapshotError.truncated("\(size) bytes, its end is missing")
        : SnapshotError.corrupt("file length \(size), trailer says \(declared)")
    }
    let stored = u32(size - 4)
    let actual = chostio_crc32c(0, base, size - 4)
    guard stored == actual else {
      throw SnapshotError.corrupt(
        "checksum mismatch (CRC-32C 0x\(String(actual, radix: 16)), stored 0x\(String(stored, radix: 16)))"
      )
    }
    let count = u32(size - SnapshotFormat.trailerSize)
    var o = SnapshotFormat.headerSize
    let end = size - SnapshotFormat.trailerSize
    for _ in 0..<count {
      guard end - o >= 2 else { throw SnapshotError.corrupt("section table runs past the end") }
      let n = Int(u16(o))
      o += 2
      guard end - o >= n + 8 else { throw SnapshotError.corrupt("section name runs past the end") }
      let name = String(decoding: UnsafeRawBufferPointer(start: base + o, count: n), as: UTF8.self)
      o += n
      let len = u64(o)
      o += 8
      guard len <= UInt64(end - o) else {
        throw SnapshotError.corrupt("section \(name) runs past the end")
      }
      guard sections[name] == nil else {
        throw SnapshotError.corrupt("section \(name) appears twice")
      }
      sections[name] = UnsafeRawBufferPointer(start: base + o, count: Int(len))
      sectionOrder.append(name)
      o += Int(len)
    }
    guard o == end else { throw SnapshotError.corrupt("\(end - o) stray bytes after the sections") }
  }

  func section(_ name: String) throws -> UnsafeRawBufferPointer {
    guard let s = sections[name] else { throw SnapshotError.corrupt("section \(name) is missing") }
    return s
  }

  func bytes(_ name: String) throws -> [UInt8] { Array(try section(name)) }
}

func errnoText() -> String { String(cString: strerror(errno)) }

extension SnapshotFormat {
  /// CRC-32C as the trailer stores it (tests re-seal edited files with it).
  static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let b = bytes.baseAddress else { return 0 }
    return chostio_crc32c(0, b, bytes.count)
  }
}
