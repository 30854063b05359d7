import Memory

/// virtio-net (virtio 1.2 §5.1) with one queue pair and no offloads: queue 0
/// receives (host to guest), queue 1 transmits. Every buffer starts with the
/// 12-byte `virtio_net_hdr` (VERSION_1 layout); with no offloads negotiated the
/// device writes it as zeros and ignores the driver's.
///
/// Frames the guest sends go to `transmit`. The VMM feeds frames from the
/// back-end with `receive`; a frame that finds no posted buffer waits in a
/// bounded backlog, and one that fits no buffer, or arrives when the backlog is
/// full, is dropped and counted (as a congested link drops; TCP recovers).
public final class VirtioNet: VirtioDevice {
  public static let headerSize = 12
  /// Largest Ethernet frame without offloads: 1514 bytes plus a VLAN tag.
  public static let maxFrameSize = 1518
  public static let maxBacklogFrames = 256

  public enum Feature {
    public static let mac: UInt64 = 1 << 5
    public static let status: UInt64 = 1 << 16
  }

  /// Counters for `--stats` and `bench io`; malformed frames never stop the device.
  public struct Counters: Equatable {
    public var framesTransmitted: UInt64 = 0
    public var bytesTransmitted: UInt64 = 0
    public var framesReceived: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Transmit chains with a short header, a frame under 14 or over `maxFrameSize` bytes.
    public var malformedTransmits: UInt64 = 0
    /// Received frames dropped: no room in the backlog, or larger than the posted buffer.
    public var receiveDrops: UInt64 = 0
  }

  public let mac: [UInt8]
  public internal(set) var counters = Counters()
  private let transmit: ([UInt8]) -> Void
  var backlog: [[UInt8]] = []
  private var queues: [SplitVirtqueue] = []
  private var memory: GuestMemory?
  private weak var transport: VirtioTransport?

  public init(mac: [UInt8], transmit: @escaping ([UInt8]) -> Void) {
    precondition(mac.count == 6)
    self.mac = mac
    self.transmit = transmit
  }

  public var deviceType: VirtioDeviceType { .network }
  public var deviceFeatures: UInt64 { Feature.mac | Feature.status }
  public var queueMaxSizes: [UInt16] { [256, 256] }
  /// mac[6], status (VIRTIO_NET_S_LINK_UP), max_virtqueue_pairs.
  public var configSize: Int { 10 }
  public func readConfig(offset: Int, size: Int) -> UInt64 {
    readLE(mac + [1, 0, 1, 0], offset: offset, size: size)
  }
  public func writeConfig(offset: Int, size: Int, value: UInt64) {}

  /// Whether frames wait for the guest to post receive buffers.
  public var hasBacklog: Bool { !backlog.isEmpty }

  /// One frame from the back-end. Returns false if it was dropped.
  @discardableResult
  public func receive(_ frame: [UInt8]) -> Bool {
    guard frame.count <= Self.maxFrameSize, backlog.count < Self.maxBacklogFrames else {
      counters.receiveDrops += 1
      return false
    }
    backlog.append(frame)
    do { try deliver() } catch { transport?.deviceFailed(error) }
    return true
  }

  public func activate(
    features: UInt64, queues: [SplitVirtqueue], memory: GuestMemory, transport: VirtioTransport
  ) {
    self.queues = queues
    self.memory = memory
    self.transport = transport
    do { try deliver() } catch { transport.deviceFailed(error) }
  }

  public func reset() {
    queues = []
    memory = nil
    backlog = []
  }

  public func queueNotified(_ index: Int) throws(VirtqueueError) {
    guard queues.count == 2, let memory else { return }
    if index == 0 { return try deliver() }
    guard index == 1 else { return }
    let q = queues[1]
    var served = false
    while let chain = try q.pop() {
      served = true
      let length = chain.readableLength
      guard length >= Self.headerSize + 14, length <= Self.headerSize + Self.maxFrameSize else {
        counters.malformedTransmits += 1
        try q.push(head: chain.head, written: 0)
        continue
      }
      let frame = try chain.readBytes(
        memory, from: Self.headerSize, count: length - Self.headerSize)
      try q.push(head: chain.head, written: 0)
      counters.framesTransmitted += 1
      counters.bytesTransmitted += UInt64(frame.count)
      transmit(frame)
    }
    if served { transport?.queueUsed(1) }
  }

  /// Moves backlog frames into the guest's posted receive buffers, one frame per chain.
  private func deliver() throws(VirtqueueError) {
    guard queues.count == 2, let memory, !backlog.isEmpty else { return }
    let q = queues[0]
    var served = false
    while let frame = backlog.first, let chain = try q.pop() {
      backlog.removeFirst()
      served = true
      guard chain.writableLength >= Self.headerSize + frame.count else {
        counters.receiveDrops += 1
        try q.push(head: chain.head, written: 0)
        continue
      }
      // num_buffers (the last header field) is 1: one chain holds the whole frame.
      var header = [UInt8](repeating: 0, count: Self.headerSize)
      header[10] = 1
      let n = try chain.writeBytes(memory, at: 0, header + frame)
      try q.push(head: chain.head, written: UInt32(n))
      counters.framesReceived += 1
      counters.bytesReceived += UInt64(frame.count)
    }
    if served { transport?.queueUsed(0) }
  }
}
