#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Why an initramfs cannot be built. Every message names the path.
public enum InitramfsError: Error, Equatable, CustomStringConvertible {
  case unreadable(String, String)
  case symlinkLoop(String)
  case missing(String)
  case invalid(String)

  public var description: String {
    switch self {
    case .unreadable(let p, let why): return "cannot read \(p): \(why)"
    case .symlinkLoop(let p): return "symbolic link loop at \(p)"
    case .missing(let s): return "initramfs input is missing \(s)"
    case .invalid(let s): return "invalid initramfs input: \(s)"
    }
  }
}

/// One member of a newc cpio archive. Paths are relative to the archive root, "/"-separated.
public struct CPIOEntry: Equatable {
  public enum Kind: Equatable {
    case file([UInt8])
    case directory
    case symlink(String)
    case characterDevice(major: UInt32, minor: UInt32)
    case blockDevice(major: UInt32, minor: UInt32)
  }
  public var path: String
  public var kind: Kind
  /// Permission bits (the file-type bits come from `kind`).
  public var permissions: UInt32
  public var uid: UInt32 = 0
  public var gid: UInt32 = 0
  public var mtime: UInt32 = 0

  public init(_ path: String, _ kind: Kind, permissions: UInt32? = nil) {
    self.path = path
    self.kind = kind
    switch kind {
    case .file: self.permissions = permissions ?? 0o644
    case .directory: self.permissions = permissions ?? 0o755
    case .symlink: self.permissions = permissions ?? 0o777
    case .characterDevice, .blockDevice: self.permissions = permissions ?? 0o600
    }
  }

  var typeBits: UInt32 {
    switch kind {
    case .file: return 0o100000
    case .directory: return 0o040000
    case .symlink: return 0o120000
    case .characterDevice: return 0o020000
    case .blockDevice: return 0o060000
    }
  }
}

/// newc ("070701") cpio archives, the format the kernel unpacks as an initramfs,
/// and a gzip wrapper for them.
public enum CPIO {
  static let magic = "070701"
  static let trailer = "TRAILER!!!"

  /// Archives `entries` in order, adding any missing parent directories first (the kernel
  /// does not create them). Ownership is as given (0 by default); inode numbers are fresh.
  public static func archive(_ entries: [CPIOEntry]) -> [UInt8] {
    var out: [UInt8] = []
    var seen = Set<String>()
    var ino: UInt32 = 1
    func emit(_ e: CPIOEntry) {
      var data: [UInt8] = []
      var rdev: (UInt32, UInt32) = (0, 0)
      switch e.kind {
      case .file(let d): data = d
      case .symlink(let t): data = Array(t.utf8)
      case .characterDevice(let ma, let mi), .blockDevice(let ma, let mi): rdev = (ma, mi)
      case .directory: break
      }
      let nlink: UInt32 = e.kind == .directory ? 2 : 1
      writeHeader(
        &out, name: e.path, ino: ino, mode: e.typeBits | (e.permissions & 0o7777), uid: e.uid,
        gid: e.gid, nlink: nlink, mtime: e.mtime, size: data.count, rdev: rdev)
      out += data
      pad(&out)
      ino += 1
    }
    for var e in entries {
      e.path = normalize(e.path)
      if e.path.isEmpty { continue }  // the root itself
      var parent = ""
      for comp in e.path.split(separator: "/").dropLast() {
        parent = parent.isEmpty ? String(comp) : parent + "/" + comp
        if seen.insert(parent).inserted { emit(CPIOEntry(parent, .directory)) }
      }
      if seen.insert(e.path).inserted || e.kind != .directory { emit(e) }
    }
    writeHeader(
      &out, name: trailer, ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, size: 0,
      rdev: (0, 0))
    pad(&out)
    return out
  }

  static func normalize(_ path: String) -> String {
    path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
  }

  static func writeHeader(
    _ out: inout [UInt8], name: String, ino: UInt32, mode: UInt32, uid: UInt32, gid: UInt32,
    nlink: UInt32, mtime: UInt32, size: Int, rdev: (UInt32, UInt32)
  ) {
    let nameBytes = Array(name.utf8) + [0]
    let fields: [UInt32] = [
      ino, mode, uid, gid, nlink, mtime, UInt32(size), 0, 0, rdev.0, rdev.1,
      UInt32(nameBytes.count), 0,
    ]
    out += Array(magic.utf8)
    for f in fields { out += hex8(f) }
    out += nameBytes
    pad(&out)
  }

  static func hex8(_ v: UInt32) -> [UInt8] {
    let digits = Array("0123456789ABCDEF".utf8)
    return (0..<8).map { digits[Int((v >> (28 - 4 * UInt32($0))) & 0xF)] }
  }

  static func pad(_ out: inout [UInt8]) {
    while out.count % 4 != 0 { out.append(0) }
  }

  /// Reads a newc archive back (up to the trailer); for tests and `initramfs --list`.
  public static func parse(_ bytes: [UInt8]) throws -> [CPIOEntry] {
    var out: [CPIOEntry] = []
    var o = 0
    func field(_ i: Int) throws -> UInt32 {
      let s = String(decoding: bytes[(o + 6 + 8 * i)..<(o + 14 + 8 * i)], as: UTF8.self)
      guard let v = UInt32(s, radix: 16) else {
        throw InitramfsError.invalid("cpio header at \(o): field \(i) is not hex")
      }
      return v
    }
    while true {
      guard bytes.count - o >= 110 else { throw InitramfsError.invalid("cpio truncated at \(o)") }
      guard String(decoding: bytes[o..<(o + 6)], as: UTF8.self) == magic else {
        throw InitramfsError.invalid("no newc magic at offset \(o)")
      }
      let mode = try field(1)
      let size = Int(try field(6))
      let namesize = Int(try field(11))
      guard namesize >= 1, namesize <= bytes.count - o - 110 else {
        throw InitramfsError.invalid("cpio name at \(o) runs past the end")
      }
      let name = String(decoding: bytes[(o + 110)..<(o + 110 + namesize - 1)], as: UTF8.self)
      var d = (o + 110 + namesize + 3) & ~3
      guard size <= bytes.count - d else {
        throw InitramfsError.invalid("cpio data of \(name) runs past the end")
      }
      if name == trailer { break }
      let data = Array(bytes[d..<(d + size)])
      let kind: CPIOEntry.Kind
      switch mode & 0o170000 {
      case 0o100000: kind = .file(data)
      case 0o040000: kind = .directory
      case 0o120000: kind = .symlink(String(decoding: data, as: UTF8.self))
      case 0o020000: kind = .characterDevice(major: try field(9), minor: try field(10))
      case 0o060000: kind = .blockDevice(major: try field(9), minor: try field(10))
      default:
        throw InitramfsError.invalid(
          "cpio entry \(name) has unsupported mode 0o\(String(mode, radix: 8))")
      }
      var e = CPIOEntry(name, kind, permissions: mode & 0o7777)
      e.uid = try field(2)
      e.gid = try field(3)
      e.mtime = try field(5)
      out.append(e)
      d = (d + size + 3) & ~3
      o = d
    }
    return out
  }
}

// MARK: Directory trees

extension CPIO {
  /// Linux's MAXSYMLINKS: more links than this while resolving one path is a loop.
  static let maxSymlinkDepth = 40

  /// Entries for the tree under `directory` (which may itself be a symlink), in a stable
  /// order, owned by 0:0. Symlinks are stored, never followed; a symlink chain that loops
  /// inside the tree is refused. Device nodes, FIFOs and sockets are skipped unless
  /// `includeDeviceNodes` (then char/block devices are kept; FIFOs and sockets still skipped).
  public static func entries(fromDirectory directory: String, includeDeviceNodes: Bool = false)
    throws -> [CPIOEntry]
  {
    var st = stat()
    guard stat(directory, &st) == 0 else {
      throw InitramfsError.unreadable(directory, errnoString())
    }
    guard st.st_mode & S_IFMT == S_IFDIR else {
      throw InitramfsError.invalid("\(directory) is not a directory")
    }
    var out: [CPIOEntry] = []
    var visited = Set<[UInt64]>([[UInt64(st.st_dev), UInt64(st.st_ino)]])
    try walk(directory, relative: "", into: &out, visited: &visited, devices: includeDeviceNodes)
    try checkSymlinks(out)
    return out
  }

  private static func walk(
    _ dir: String, relative: String, into out: inout [CPIOEntry], visited: inout Set<[UInt64]>,
    devices: Bool
  ) throws {
    guard let d = opendir(dir) else { throw InitramfsError.unreadable(dir, errnoString()) }
    var names: [String] = []
    while let ent = readdir(d) {
      let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    closedir(d)
    for name in names.sorted() {
      let full = dir + "/" + name
      let rel = relative.isEmpty ? name : relative + "/" + name
      var st = stat()
      guard lstat(full, &st) == 0 else { throw InitramfsError.unreadable(full, errnoString()) }
      let perms = UInt32(st.st_mode) & 0o7777
      var e: CPIOEntry
      switch st.st_mode & S_IFMT {
      case S_IFREG:
        e = CPIOEntry(rel, .file(try readFile(full)), permissions: perms)
      case S_IFDIR:
        // Bind mounts can make a directory its own descendant.
        guard visited.insert([UInt64(st.st_dev), UInt64(st.st_ino)]).inserted else {
          throw InitramfsError.symlinkLoop("\(full) (directory already visited)")
        }
        out.append(CPIOEntry(rel, .directory, permissions: perms))
        try walk(full, relative: rel, into: &out, visited: &visited, devices: devices)
        continue
      case S_IFLNK:
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(full, &buf, 4096)
        guard n >= 0 else { throw InitramfsError.unreadable(full, errnoString()) }
        let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        e = CPIOEntry(rel, .symlink(target), permissions: 0o777)
      case S_IFCHR where devices, S_IFBLK where devices:
        let rdev = UInt64(st.st_rdev)
        // glibc's major/minor encoding.
        let major = UInt32(((rdev >> 8) & 0xFFF) | ((rdev >> 32) & ~0xFFF))
        let minor = UInt32((rdev & 0xFF) | ((rdev >> 12) & ~0xFF))
        e = CPIOEntry(
          rel,
          st.st_mode & S_IFMT == S_IFCHR
            ? .characterDevice(major: major, minor: minor)
            : .blockDevice(major: major, minor: minor),
          permissions: perms)
      default:
        continue
      }
      out.append(e)
    }
  }

  static func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw InitramfsError.unreadable(path, errnoString()) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw InitramfsError.unreadable(path, errnoString())
      }
      if n == 0 { break }
      out += chunk[0..<n]
    }
    return out
  }

  static func errnoString() -> String { String(cString: strerror(errno)) }

  /// Resolves every symlink inside the archive the way the guest kernel will (absolute
  /// targets from the archive root) and refuses chains longer than `maxSymlinkDepth`.
  /// Targets that leave the archive are fine: they may point at mounts made at run time.
  public static func checkSymlinks(_ entries: [CPIOEntry]) throws {
    var links: [String: String] = [:]
    for e in entries {
      if case .symlink(let t) = e.kind { links[normalize(e.path)] = t }
    }
    for (path, _) in links {
      var budget = maxSymlinkDepth
      _ = try resolve(
        path.split(separator: "/").map(String.init), links: links, budget: &budget, origin: path)
    }
  }

  /// Path resolution over the archive's symlink map; returns the final components.
  private static func resolve(
    _ comps: [String], links: [String: String], budget: inout Int, origin: String
  ) throws -> [String] {
    var done: [String] = []
    var pending = comps[...]
    while let c = pending.first {
      pending = pending.dropFirst()
      if c == "." || c.isEmpty { continue }
      if c == ".." {
        if !done.isEmpty { done.removeLast() }
        continue
      }
      let candidate = (done + [c]).joined(separator: "/")
      if let target = links[candidate] {
        budget -= 1
        guard budget >= 0 else { throw InitramfsError.symlinkLoop(origin) }
        let t = target.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if target.hasPrefix("/") {
          done = []
        }
        pending = (t + Array(pending))[...]
      } else {
        done.append(c)
      }
    }
    return done
  }
}

// MARK: gzip

/// gzip (RFC 1952) around DEFLATE (RFC 1951). `compress: false` writes stored blocks only;
/// the default uses fixed-Huffman blocks with a hash-chain LZ77 matcher — not as small as
/// zlib, but every inflater (the kernel's included) reads it.
public enum Gzip {
  public static func compress(_ data: [UInt8], level: Level = .fixedHuffman) -> [UInt8] {
    var out: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3]
    switch level {
    case .stored: out += Deflate.stored(data)
    case .fixedHuffman: out += Deflate.fixed(data)
    }
    let crc = crc32(data)
    for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))) }
    let n = UInt32(truncatingIfNeeded: data.count)
    for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt32(i)))) }
    return out
  }

  public enum Level { case stored, fixedHuffman }

  static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
  }

  public static func crc32(_ data: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    crcTable.withUnsafeBufferPointer { t in
      for b in data { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
  }
}

enum Deflate {
  static func stored(_ data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var o = 0
    repeat {
      let n = min(65535, data.count - o)
      let final: UInt8 = o + n == data.count ? 1 : 0
      out += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
      out += data[o..<(o + n)]
      o += n
    } while o < data.count
    return out
  }

  struct BitWriter {
    var out: [UInt8] = []
    var acc: UInt64 = 0
    var n: UInt64 = 0
    mutating func put(_ v: UInt32, _ bits: Int) {
      acc |= UInt64(v) << n
      n += UInt64(bits)
      while n >= 8 {
        out.append(UInt8(truncatingIfNeeded: acc))
        acc >>= 8
        n -= 8
      }
    }
    /// Huffman codes go most-significant bit first.
    mutating func putCode(_ code: UInt32, _ len: Int) {
      var r: UInt32 = 0
      for i in 0..<len { r |= ((code >> UInt32(i)) & 1) << UInt32(len - 1 - i) }
      put(r, len)
    }
    mutating func flush() {
      if n > 0 { out.append(UInt8(truncatingIfNeeded: acc)) }
      acc = 0
      n = 0
    }
  }

  // RFC 1951 3.2.5 length and distance tables.
  static let lengthBase: [Int] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
  ]
  static let lengthExtra: [Int] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
  ]
  static let distBase: [Int] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
    3073, 4097, 6145, 8193, 12289, 16385, 24577,
  ]
  static let distExtra: [Int] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
  ]

  static func putLiteral(_ w: inout BitWriter, _ v: Int) {
    switch v {
    case 0...143: w.putCode(UInt32(0x30 + v), 8)
    case 144...255: w.putCode(UInt32(0x190 + v - 144), 9)
    case 256...279: w.putCode(UInt32(v - 256), 7)
    default: w.putCode(UInt32(0xC0 + v - 280), 8)
    }
  }

  /// One fixed-Huffman block over the whole input, with greedy hash-chain matching.
  static func fixed(_ data: [UInt8]) -> [UInt8] {
    var w = BitWriter()
    w.out.reserveCapacity(data.count / 2)
    w.put(1, 1)  // BFINAL
    w.put(1, 2)  // BTYPE = 01, fixed Huffman
    let window = 32768
    let hashBits = 15
    let maxChain = 32
    var head = [Int32](repeating: -1, count: 1 << hashBits)
    var prev = [Int32](repeating: -1, count: window)
    let n = data.count
    data.withUnsafeBufferPointer { d in
      func hash(_ i: Int) -> Int {
        let v = Int(d[i]) << 16 | Int(d[i + 1]) << 8 | Int(d[i + 2])
        return ((v &* 2_654_435_761) >> 8) & ((1 << hashBits) - 1)
      }
      func insert(_ i: Int) {
        guard i + 2 < n else { return }
        let h = hash(i)
        prev[i & (window - 1)] = head[h]
        head[h] = Int32(i)
      }
      var i = 0
      while i < n {
        var bestLen = 0
        var bestDist = 0
        if i + 2 < n {
          var cand = Int(head[hash(i)])
          var chain = maxChain
          let limit = min(258, n - i)
          while cand >= 0, i - cand <= window - 1, chain > 0 {
            if d[cand + bestLen] == d[i + bestLen] || bestLen == 0 {
              var l = 0
              while l < limit && d[cand + l] == d[i + l] { l += 1 }
              if l > bestLen {
                bestLen = l
                bestDist = i - cand
                if l == limit { break }
              }
            }
            let p = Int(prev[cand & (window - 1)])
            if p >= cand { break }
            cand = p
            chain -= 1
          }
        }
        if bestLen >= 3 {
          var li = 0
          while li + 1 < lengthBase.count && lengthBase[li + 1] <= bestLen { li += 1 }
          putLiteral(&w, 257 + li)
          if lengthExtra[li] > 0 { w.put(UInt32(bestLen - lengthBase[li]), lengthExtra[li]) }
          var di = 0
          while di + 1 < distBase.count && distBase[di + 1] <= bestDist { di += 1 }
          w.putCode(UInt32(di), 5)
          if distExtra[di] > 0 { w.put(UInt32(bestDist - distBase[di]), distExtra[di]) }
          for k in 0..<bestLen { insert(i + k) }
          i += bestLen
        } else {
          putLiteral(&w, Int(d[i]))
          insert(i)
          i += 1
        }
      }
    }
    putLiteral(&w, 256)
    w.flush()
    return w.out
  }
}
