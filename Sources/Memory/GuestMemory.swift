#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A contiguous range of guest RAM.
public struct RAMRegion: Sendable, Equatable {
  public var start: GuestPhysicalAddress
  public var size: UInt64
  public var end: UInt64 { start.rawValue + size }
  public init(start: GuestPhysicalAddress, size: UInt64) {
    self.start = start
    self.size = size
  }
  public func contains(_ a: UInt64, _ length: UInt64) -> Bool {
    a >= start.rawValue && a < end && length <= end - a
  }
}

/// How guest frames are laid out in the host frame pool.
public enum FrameLayout: Sendable, Equatable {
  /// Each RAM region is one contiguous host range (needed by KVM memory slots).
  case contiguous
  /// Every guest frame gets a host frame in a seeded shuffled order, so GPA != HPA.
  case scattered(seed: UInt64)
}

/// Guest RAM, carved from a `HostFramePool`. Every guest frame has a host
/// frame; `hostPointer` resolves a GPA to where its bytes live.
public final class GuestMemory {
  public let pool: HostFramePool
  public let regions: [RAMRegion]
  public let layout: FrameLayout
  /// Host-physical frame number of each guest frame, indexed by region then frame.
  private let frameTables: [UnsafeMutablePointer<UInt32>]
  public let ramSize: UInt64

  /// Start of the 32-bit PCI/MMIO hole that RAM skips (as PCs do).
  public static let mmioHoleStart: UInt64 = 0xC000_0000
  public static let mmioHoleEnd: UInt64 = 0x1_0000_0000

  /// Standard PC layout of `size` bytes: below the MMIO hole, the rest above 4 GiB.
  public static func pcRegions(size: UInt64) -> [RAMRegion] {
    if size <= mmioHoleStart {
      return [RAMRegion(start: GuestPhysicalAddress(0), size: size)]
    }
    return [
      RAMRegion(start: GuestPhysicalAddress(0), size: mmioHoleStart),
      RAMRegion(start: GuestPhysicalAddress(mmioHoleEnd), size: size - mmioHoleStart),
    ]
  }

  /// Allocates `size` bytes of guest RAM in the PC layout.
  public convenience init(size: UInt64, layout: FrameLayout = .contiguous) throws {
    guard size >= 1 << 20 else {
      throw MemoryError.invalidSize("guest memory must be at least 1 MiB (asked for \(size) bytes)")
    }
    guard size % pageSize == 0 else {
      throw MemoryError.invalidSize("guest memory size must be a multiple of 4 KiB")
    }
    let pool = try HostFramePool(bytes: size)
    try self.init(pool: pool, regions: GuestMemory.pcRegions(size: size), layout: layout)
  }

  public init(pool: HostFramePool, regions: [RAMRegion], layout: FrameLayout) throws {
    self.pool = pool
    self.regions = regions
    self.layout = layout
    if case .scattered(let seed) = layout { pool.shuffle(seed: seed) }
    var tables: [UnsafeMutablePointer<UInt32>] = []
    var total: UInt64 = 0
    do {
      for r in regions {
        guard r.size % pageSize == 0, r.start.rawValue % pageSize == 0 else {
          throw MemoryError.invalidSize("RAM region \(r.start) is not page aligned")
        }
        let frames = Int(r.size / pageSize)
        let t = UnsafeMutablePointer<UInt32>.allocate(capacity: frames)
        tables.append(t)
        switch layout {
        case .contiguous:
          let first = try pool.allocateContiguous(frames: frames).frameNumber
          for i in 0..<frames { t[i] = UInt32(first) + UInt32(i) }
        case .scattered:
          for i in 0..<frames { t[i] = UInt32(try pool.allocateFrame().frameNumber) }
        }
        total += r.size
      }
    } catch {
      for t in tables { t.deallocate() }
      throw error
    }
    frameTables = tables
    ramSize = total
  }

  deinit { for t in frameTables { t.deallocate() } }

  /// Region index containing [gpa, gpa+length), or nil.
  @inline(__always)
  public func regionIndex(_ gpa: UInt64, length: UInt64 = 1) -> Int? {
    for i in 0..<regions.count where regions[i].contains(gpa, length) { return i }
    return nil
  }

  public func isRAM(_ gpa: GuestPhysicalAddress, length: UInt64 = 1) -> Bool {
    regionIndex(gpa.rawValue, length: length) != nil
  }

  /// GPA -> HPA, or nil outside RAM.
  public func hostPhysical(_ gpa: GuestPhysicalAddress) -> HostPhysicalAddress? {
    guard let i = regionIndex(gpa.rawValue) else { return nil }
    let frame = (gpa.rawValue - regions[i].start.rawValue) >> 12
    return HostPhysicalAddress(UInt64(frameTables[i][Int(frame)]) << 12 | gpa.pageOffset)
  }

  /// Host pointer to the byte at `gpa`, valid up to the end of its 4 KiB page.
  @inline(__always)
  public func pagePointer(_ gpa: UInt64) -> UnsafeMutableRawPointer? {
    guard let i = regionIndex(gpa) else { return nil }
    let frame = (gpa - regions[i].start.rawValue) >> 12
    return pool.base + Int(UInt64(frameTables[i][Int(frame)]) << 12 | (gpa & 0xFFF))
  }

  /// Host pointer to a whole region; only with the contiguous layout (KVM memory slots).
  public func contiguousPointer(region: Int) -> UnsafeMutableRawPointer? {
    guard layout == .contiguous, region < regions.count else { return nil }
    return pool.base + Int(UInt64(frameTables[region][0]) << 12)
  }

  /// Host pointer to [gpa, gpa+length) when it is contiguous on the host, else nil.
  public func hostPointer(_ gpa: GuestPhysicalAddress, length: Int) -> UnsafeMutableRawPointer? {
    guard length >= 0, let i = regionIndex(gpa.rawValue, length: UInt64(max(length, 1))) else {
      return nil
    }
    if layout == .contiguous, let base = contiguousPointer(region: i) {
      return base + Int(gpa.rawValue - regions[i].start.rawValue)
    }
    let pageEnd = (gpa.rawValue | 0xFFF) + 1
    guard gpa.rawValue + UInt64(length) <= pageEnd else { return nil }
    return pagePointer(gpa.rawValue)
  }

  // MARK: Checked copies (loaders, devices, DMA)

  public func read(_ gpa: GuestPhysicalAddress, into buffer: UnsafeMutableRawBufferPointer) throws {
    try walk(gpa, buffer.count) { host, off, n in
      (buffer.baseAddress! + off).copyMemory(from: host, byteCount: n)
    }
  }

  public func write(_ gpa: GuestPhysicalAddress, from buffer: UnsafeRawBufferPointer) throws {
    try walk(gpa, buffer.count) { host, off, n in
      host.copyMemory(from: buffer.baseAddress! + off, byteCount: n)
    }
  }

  public func write(_ gpa: GuestPhysicalAddress, bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try write(gpa, from: $0) }
  }

  public func readBytes(_ gpa: GuestPhysicalAddress, count: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    try out.withUnsafeMutableBytes { try read(gpa, into: $0) }
    return out
  }

  public func fill(_ gpa: GuestPhysicalAddress, count: Int, value: UInt8) throws {
    try walk(gpa, count) { host, _, n in memset(host, Int32(value), n) }
  }

  public func read<T: FixedWidthInteger>(_ gpa: GuestPhysicalAddress, as: T.Type = T.self) throws
    -> T
  {
    var v = T.zero
    try withUnsafeMutableBytes(of: &v) { try read(gpa, into: $0) }
    return T(littleEndian: v)
  }

  public func write<T: FixedWidthInteger>(_ gpa: GuestPhysicalAddress, value: T) throws {
    var v = value.littleEndian
    try withUnsafeBytes(of: &v) { try write(gpa, from: $0) }
  }

  /// Calls `body(hostPointer, byteCount)` for each host-contiguous piece of
  /// [gpa, gpa+count), in order, after checking the whole range is RAM: devices
  /// use it to do I/O straight into guest memory (preadv/pwritev).
  public func forEachHostPiece(
    _ gpa: GuestPhysicalAddress, count: Int, _ body: (UnsafeMutableRawPointer, Int) throws -> Void
  ) throws {
    guard count > 0 else { return }
    guard UInt64(count) <= UInt64.max - gpa.rawValue, isRAM(gpa, length: UInt64(count)) else {
      throw MemoryError.outsideRAM(gpa, length: count)
    }
    if let p = hostPointer(gpa, length: count) { return try body(p, count) }
    var pieceStart = pagePointer(gpa.rawValue)!
    var pieceLength = 0
    var done = 0
    var a = gpa.rawValue
    while done < count {
      let n = min(count - done, Int(4096 - (a & 0xFFF)))
      let p = pagePointer(a)!
      if p != pieceStart + pieceLength {
        try body(pieceStart, pieceLength)
        pieceStart = p
        pieceLength = 0
      }
      pieceLength += n
      done += n
      a += UInt64(n)
    }
    try body(pieceStart, pieceLength)
  }

  /// Calls `body(hostPointer, offsetInBuffer, byteCount)` for each page-sized piece.
  private func walk(
    _ gpa: GuestPhysicalAddress, _ count: Int,
    _ body: (UnsafeMutableRawPointer, Int, Int) -> Void
  ) throws {
    guard count > 0 else { return }
    guard UInt64(count) <= UInt64.max - gpa.rawValue, isRAM(gpa, length: UInt64(count)) else {
      throw MemoryError.outsideRAM(gpa, length: count)
    }
    var done = 0
    var a = gpa.rawValue
    while done < count {
      let n = min(count - done, Int(4096 - (a & 0xFFF)))
      body(pagePointer(a)!, done, n)
      done += n
      a += UInt64(n)
    }
  }
}
