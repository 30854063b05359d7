import CHostIO
import Memory

#if canImport(Glibc)
  import Glibc
#endif

/// virtio-rng (virtio 1.2 §5.4): fills each device-writable buffer from the
/// host's getrandom(2). A request is capped at `maxBytesPerRequest` (the spec
/// lets the device return fewer bytes), so one chain cannot hold the vCPU long.
public final class VirtioEntropy: VirtioDevice {
  static let maxBytesPerRequest = 64 * 1024
  private var queue: SplitVirtqueue?
  private var memory: GuestMemory?
  private weak var transport: VirtioTransport?

  public init() {}

  public var deviceType: VirtioDeviceType { .entropy }
  public var deviceFeatures: UInt64 { 0 }
  public var queueMaxSizes: [UInt16] { [64] }
  public var configSize: Int { 0 }
  public func readConfig(offset: Int, size: Int) -> UInt64 { 0 }
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
      let want = min(chain.writableLength, Self.maxBytesPerRequest)
      let pieces = try DescriptorChain.hostPieces(
        memory, DescriptorChain.slice(chain.writable, from: 0, count: want))
      var written = 0
      for p in pieces {
        let n = Self.fill(p)
        written += n
        if n < p.count { break }
      }
      try queue.push(head: chain.head, written: UInt32(written))
      served = true
    }
    if served { transport?.queueUsed(0) }
  }

  /// Fills `buffer` from getrandom; returns the bytes filled (all unless the host fails).
  static func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
    var done = 0
    while done < buffer.count {
      let n = chostio_getrandom(buffer.baseAddress! + done, buffer.count - done)
      if n < 0 {
        if errno == EINTR { continue }
        break
      }
      done += n
    }
    return done
  }
}
