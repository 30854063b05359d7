/// A parsed ELF executable: just what loaders need (class, machine, entry, segments, notes).
public struct ELFImage: Equatable {
  public enum Class: Equatable { case elf32, elf64 }
  public struct Segment: Equatable {
    public var fileOffset: UInt64
    public var virtualAddress: UInt64
    public var physicalAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
  }
  public struct Note: Equatable {
    public var name: String
    public var type: UInt32
    public var descriptor: [UInt8]
  }

  public var elfClass: Class
  public var machine: UInt16
  public var entry: UInt64
  /// PT_LOAD segments in file order.
  public var segments: [Segment]
  /// Notes from PT_NOTE segments.
  public var notes: [Note]

  public static let machineI386: UInt16 = 3
  public static let machineX86_64: UInt16 = 62

  public static func isELF(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 4 && bytes[0] == 0x7F && bytes[1] == 0x45 && bytes[2] == 0x4C && bytes[3] == 0x46
  }

  /// Parses and validates `bytes`; every offset and size is checked against the file.
  public init(_ bytes: [UInt8]) throws {
    let r = ByteReader(bytes)
    guard ELFImage.isELF(bytes) else { throw BootError.notELF }
    guard bytes.count >= 52 else { throw BootError.truncated("ELF header") }
    guard bytes[5] == 1 else { throw BootError.malformed("ELF is not little-endian") }
    guard bytes[6] == 1 else { throw BootError.malformed("unknown ELF version \(bytes[6])") }
    let is64: Bool
    switch bytes[4] {
    case 1: is64 = false
    case 2: is64 = true
    default: throw BootError.malformed("unknown ELF class \(bytes[4])")
    }
    elfClass = is64 ? .elf64 : .elf32
    if is64 && bytes.count < 64 { throw BootError.truncated("ELF64 header") }
    let type = try r.u16(16)
    guard type == 2 || type == 3 else {
      throw BootError.malformed("ELF type \(type) is not an executable")
    }
    machine = try r.u16(18)
    guard machine == ELFImage.machineI386 || machine == ELFImage.machineX86_64 else {
      throw BootError.malformed("ELF machine \(machine) is not x86")
    }
    let phoff: UInt64
    let phentsize: UInt64
    let phnum: UInt64
    if is64 {
      entry = try r.u64(24)
      phoff = try r.u64(32)
      phentsize = UInt64(try r.u16(54))
      phnum = UInt64(try r.u16(56))
    } else {
      entry = UInt64(try r.u32(24))
      phoff = UInt64(try r.u32(28))
      phentsize = UInt64(try r.u16(42))
      phnum = UInt64(try r.u16(44))
    }
    guard phnum > 0 else { throw BootError.malformed("ELF has no program headers") }
    guard phentsize >= (is64 ? 56 : 32) else {
      throw BootError.malformed("ELF program header size \(phentsize) too small")
    }
    guard phoff <= UInt64(bytes.count), phnum * phentsize <= UInt64(bytes.count) - phoff else {
      throw BootError.truncated("ELF program headers")
    }
    var segs: [Segment] = []
    var notes: [Note] = []
    for i in 0..<phnum {
      let o = Int(phoff + i * phentsize)
      let pType = try r.u32(o)
      var s: Segment
      if is64 {
        s = Segment(
          fileOffset: try r.u64(o + 8), virtualAddress: try r.u64(o + 16),
          physicalAddress: try r.u64(o + 24), fileSize: try r.u64(o + 32),
          memorySize: try r.u64(o + 40))
      } else {
        s = Segment(
          fileOffset: UInt64(try r.u32(o + 4)), virtualAddress: UInt64(try r.u32(o + 8)),
          physicalAddress: UInt64(try r.u32(o + 12)), fileSize: UInt64(try r.u32(o + 16)),
          memorySize: UInt64(try r.u32(o + 20)))
      }
      guard s.fileOffset <= UInt64(bytes.count), s.fileSize <= UInt64(bytes.count) - s.fileOffset
      else {
        throw BootError.truncated("ELF segment \(i) data")
      }
      switch pType {
      case 1:  // PT_LOAD
        guard s.fileSize <= s.memorySize else {
          throw BootError.malformed("ELF segment \(i) file size exceeds memory size")
        }
        guard s.memorySize <= UInt64.max - s.physicalAddress else {
          throw BootError.malformed("ELF segment \(i) wraps the address space")
        }
        segs.append(s)
      case 4:  // PT_NOTE
        notes += try ELFImage.parseNotes(r, from: Int(s.fileOffset), size: Int(s.fileSize))
      default:
        break
      }
    }
    guard !segs.isEmpty else { throw BootError.malformed("ELF has no loadable segments") }
    segments = segs
    self.notes = notes
  }

  private static func parseNotes(_ r: ByteReader, from start: Int, size: Int) throws -> [Note] {
    var out: [Note] = []
    var o = start
    let end = start + size
    func align4(_ x: Int) -> Int { (x + 3) & ~3 }
    while o + 12 <= end {
      let nameSize = Int(try r.u32(o))
      let descSize = Int(try r.u32(o + 4))
      let type = try r.u32(o + 8)
      let nameStart = o + 12
      guard nameSize <= end - nameStart else { throw BootError.truncated("ELF note name") }
      let descStart = nameStart + align4(nameSize)
      guard descStart <= end, descSize <= end - descStart else {
        throw BootError.truncated("ELF note descriptor")
      }
      let nameBytes = try r.bytes(nameStart, nameSize).prefix { $0 != 0 }
      out.append(
        Note(
          name: String(decoding: nameBytes, as: UTF8.self), type: type,
          descriptor: try r.bytes(descStart, descSize)))
      o = descStart + align4(descSize)
    }
    return out
  }
}

/// Bounds-checked little-endian reads from a byte array.
struct ByteReader {
  let b: [UInt8]
  init(_ b: [UInt8]) { self.b = b }

  func check(_ o: Int, _ n: Int) throws {
    guard o >= 0, n >= 0, o <= b.count, n <= b.count - o else {
      throw BootError.truncated("read of \(n) bytes at offset \(o)")
    }
  }
  func u8(_ o: Int) throws -> UInt8 {
    try check(o, 1)
    return b[o]
  }
  func u16(_ o: Int) throws -> UInt16 {
    try check(o, 2)
    return UInt16(b[o]) | UInt16(b[o + 1]) << 8
  }
  func u32(_ o: Int) throws -> UInt32 {
    try check(o, 4)
    return UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
  }
  func u64(_ o: Int) throws -> UInt64 {
    UInt64(try u32(o)) | UInt64(try u32(o + 4)) << 32
  }
  func bytes(_ o: Int, _ n: Int) throws -> [UInt8] {
    try check(o, n)
    return Array(b[o..<(o + n)])
  }
}
