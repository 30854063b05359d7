import Logging
import Memory

/// virtio-blk (virtio 1.2 §5.2) over a raw `DiskImage`.
///
/// Requests run synchronously on the vCPU thread, inside the notify exit.
/// The interpreter is one thread and far slower than the page cache, so a
/// worker would add a cross-thread completion path (and its locking on the
/// rings) to save microseconds; only flush (fsync) can block for long, and
/// the guest asked to wait for it. The single-request path also keeps runs
/// with `--deterministic` reproducible.
///
/// A malformed request fails alone (VIRTIO_BLK_S_IOERR, logged once per
/// kind) when it has a status byte to report it in; without one, the device
/// needs a reset.
public final class VirtioBlock: VirtioDevice {
  enum RequestType {
    static let read: UInt32 = 0
    static let write: UInt32 = 1
    static let flush: UInt32 = 4
    static let getID: UInt32 = 8
    static let discard: UInt32 = 11
    static let writeZeroes: UInt32 = 13
  }
  enum Status {
    static let ok: UInt8 = 0
    static let ioError: UInt8 = 1
    static let unsupported: UInt8 = 2
  }
  enum Feature {
    static let segMax: UInt64 = 1 << 2
    static let readOnly: UInt64 = 1 << 5
    static let blockSize: UInt64 = 1 << 6
    static let flush: UInt64 = 1 << 9
    static let discard: UInt64 = 1 << 13
    static let writeZeroes: UInt64 = 1 << 14
  }
  static let headerSize = 16
  static let segmentSize = 16
  static let queueSize: UInt16 = 256
  /// Longest request in sectors we advertise for discard and write-zeroes.
  static let maxRangeSectors: UInt32 = 1 << 22

  public let disk: DiskImage
  /// The serial number GET_ID returns (up to 20 bytes).
  public let serial: [UInt8]
  private let logger: Logger
  private var warned = Set<String>()
  private var queue: SplitVirtqueue?
  private var memory: GuestMemory?
  private weak var transport: VirtioTransport?

  public init(
    disk: DiskImage, serial: String, logger: Logger = Logger(label: "swiftvmm.virtio-blk")
  ) {
    self.disk = disk
    self.serial = Array(serial.utf8.prefix(20))
    self.logger = logger
  }

  public var deviceType: VirtioDeviceType { .block }
  public var queueMaxSizes: [UInt16] { [Self.queueSize] }

  public var deviceFeatures: UInt64 {
    var f = Feature.segMax | Feature.blockSize | Feature.flush
    if disk.readOnly { f |= Feature.readOnly }
    if disk.canPunchHoles { f |= Feature.discard }
    if disk.canPunchHoles || disk.canZeroRanges { f |= Feature.writeZeroes }
    return f
  }

  /// capacity, size_max, seg_max, geometry, blk_size, topology, writeback,
  /// unused, num_queues, discard and write-zeroes limits (§5.2.4).
  private lazy var config: [UInt8] = {
    var c: [UInt8] = []
    appendLE(&c, disk.size / DiskImage.sectorSize)  // 0: capacity
    appendLE(&c, UInt32(0))  // 8: size_max (not offered)
    appendLE(&c, UInt32(Self.queueSize - 2))  // 12: seg_max
    appendLE(&c, UInt32(0))  // 16: geometry
    appendLE(&c, UInt32(DiskImage.sectorSize))  // 20: blk_size
    appendLE(&c, UInt64(0))  // 24: topology
    c += [0, 0]  // 32: writeback, unused
    appendLE(&c, UInt16(1))  // 34: num_queues
    appendLE(&c, Self.maxRangeSectors)  // 36: max_discard_sectors
    appendLE(&c, UInt32(1))  // 40: max_discard_seg
    appendLE(&c, UInt32(1))  // 44: discard_sector_alignment
    appendLE(&c, Self.maxRangeSectors)  // 48: max_write_zeroes_sectors
    appendLE(&c, UInt32(1))  // 52: max_write_zeroes_seg
    c += [disk.canPunchHoles ? 1 : 0, 0, 0, 0]  // 56: write_zeroes_may_unmap
    return c
  }()

  public var configSize: Int { config.count }
  public func readConfig(offset: Int, size: Int) -> UInt64 {
    readLE(config, offset: offset, size: size)
  }
  public func writeConfig(offset: Int, size: Int, value: UInt64) {}

  public func activate(
    features: UInt64, queues: [SplitVirtqueue], memory: GuestMemory, transport: VirtioTransport
  ) {
    queue = queues.first
    self.memory = memory
    self.transport = transport
  }

  public func reset() {
    queue = nil
    memory = nil
  }

  public func queueNotified(_ index: Int) throws(VirtqueueError) {
    guard index == 0, let queue, let memory else { return }
    var served = false
    while let chain = try queue.pop() {
      let written = try serve(chain, memory)
      try queue.push(head: chain.head, written: written)
      served = true
    }
    if served { transport?.queueUsed(0) }
  }

  private func refuse(_ why: String) {
    if warned.insert(why).inserted { logger.warning("virtio-blk \(disk.path): \(why)") }
  }

  /// Serves one request; returns the bytes written into the chain.
  func serve(_ chain: DescriptorChain, _ memory: GuestMemory) throws(VirtqueueError) -> UInt32 {
    let statusAt = chain.writableLength - 1
    guard statusAt >= 0 else {
      refuse("request without a status byte")
      throw .malformedRequest("virtio-blk request without a writable status byte")
    }
    func finish(_ status: UInt8, dataWritten: Int = 0) throws(VirtqueueError) -> UInt32 {
      try chain.writeBytes(memory, at: statusAt, [status])
      return UInt32(dataWritten + 1)
    }
    guard chain.readableLength >= Self.headerSize else {
      refuse("request header shorter than 16 device-readable bytes")
      return try finish(Status.ioError)
    }
    let h = try chain.readBytes(memory, from: 0, count: Self.headerSize)
    let type = UInt32(readLE(h, offset: 0, size: 4))
    let sector = readLE(h, offset: 8, size: 8)
    switch type {
    case RequestType.read:
      guard chain.readableLength == Self.headerSize else {
        refuse("read request with device-readable data buffers")
        return try finish(Status.ioError)
      }
      guard let offset = range(sector, UInt64(statusAt)) else { return try finish(Status.ioError) }
      let pieces = try DescriptorChain.hostPieces(
        memory, DescriptorChain.slice(chain.writable, from: 0, count: statusAt))
      guard disk.read(at: offset, into: pieces) else { return try finish(Status.ioError) }
      return try finish(Status.ok, dataWritten: statusAt)
    case RequestType.write:
      guard statusAt == 0 else {
        refuse("write request with device-writable data buffers")
        return try finish(Status.ioError)
      }
      guard !disk.readOnly else { return try finish(Status.ioError) }
      let length = chain.readableLength - Self.headerSize
      guard let offset = range(sector, UInt64(length)) else { return try finish(Status.ioError) }
      let pieces = try DescriptorChain.hostPieces(
        memory, DescriptorChain.slice(chain.readable, from: Self.headerSize, count: length))
      return try finish(disk.write(at: offset, from: pieces) ? Status.ok : Status.ioError)
    case RequestType.flush:
      return try finish(disk.flush() ? Status.ok : Status.ioError)
    case RequestType.getID:
      let n = try chain.writeBytes(memory, at: 0, Array((serial + [0]).prefix(min(20, statusAt))))
      return try finish(Status.ok, dataWritten: n)
    case RequestType.discard, RequestType.writeZeroes:
      let isDiscard = type == RequestType.discard
      guard deviceFeatures & (isDiscard ? Feature.discard : Feature.writeZeroes) != 0 else {
        return try finish(Status.unsupported)
      }
      let length = chain.readableLength - Self.headerSize
      // One segment per request, as max_*_seg says.
      guard length == Self.segmentSize, statusAt == 0 else {
        refuse("discard/write-zeroes request with \(length) bytes of segments")
        return try finish(Status.ioError)
      }
      let s = try chain.readBytes(memory, from: Self.headerSize, count: Self.segmentSize)
      let start = readLE(s, offset: 0, size: 8)
      let sectors = UInt32(readLE(s, offset: 8, size: 4))
      let flags = UInt32(readLE(s, offset: 12, size: 4))
      guard sectors <= Self.maxRangeSectors, flags & ~1 == 0,
        let offset = range(start, UInt64(sectors) * DiskImage.sectorSize)
      else { return try finish(Status.ioError) }
      let bytes = UInt64(sectors) * DiskImage.sectorSize
      let ok =
        isDiscard
        ? disk.punchHole(at: offset, length: bytes)
        : disk.writeZeroes(at: offset, length: bytes, unmap: flags & 1 != 0)
      return try finish(ok ? Status.ok : Status.ioError)
    default:
      return try finish(Status.unsupported)
    }
  }

  /// Byte offset of `length` bytes at `sector`, or nil if they are not
  /// whole sectors or run past the end of the disk.
  private func range(_ sector: UInt64, _ length: UInt64) -> UInt64? {
    guard length % DiskImage.sectorSize == 0 else {
      refuse("request length \(length) is not a multiple of 512")
      return nil
    }
    let sectors = disk.size / DiskImage.sectorSize
    guard sector <= sectors, length / DiskImage.sectorSize <= sectors - sector else {
      refuse("request past the end of the disk (sector \(sector), \(length) bytes)")
      return nil
    }
    return sector * DiskImage.sectorSize
  }
}
