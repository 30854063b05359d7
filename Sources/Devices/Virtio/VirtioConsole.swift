import Memory

/// virtio-console (virtio 1.2 §5.3) with one port and no MULTIPORT: queue 0
/// receives (host to guest), queue 1 transmits. Linux names it hvc0.
/// Transmitted bytes go to `output`; the VMM feeds host input with `receive`.
/// Input waits in a backlog until the guest posts receive buffers, so none is
/// dropped; the backlog holds at most `maxBacklog` bytes (the VMM reads the
/// terminal only as fast as the guest drains it).
public final class VirtioConsole: VirtioDevice {
  public static let maxBacklog = 1 << 20
  private let output: (UnsafeRawBufferPointer) -> Void
  var backlog: [UInt8] = []
  private var queues: [SplitVirtqueue] = []
  private var memory: GuestMemory?
  private weak var transport: VirtioTransport?
  /// Bytes transmitted and transmit chains served (for `bench io`).
  public internal(set) var bytesTransmitted: UInt64 = 0
  public internal(set) var transmitChains: UInt64 = 0

  public init(output: @escaping (UnsafeRawBufferPointer) -> Void) {
    self.output = output
  }

  public var deviceType: VirtioDeviceType { .console }
  public var deviceFeatures: UInt64 { 0 }
  public var queueMaxSizes: [UInt16] { [64, 64] }
  /// cols, rows, max_nr_ports, emerg_wr (§5.3.4); size and ports are not offered.
  public var configSize: Int { 12 }
  public func readConfig(offset: Int, size: Int) -> UInt64 { 0 }

  public func writeConfig(offset: Int, size: Int, value: UInt64) {
    // emerg_wr: one character, written even before the queues work.
    if offset == 8 {
      var b = UInt8(truncatingIfNeeded: value)
      withUnsafeBytes(of: &b) { output($0) }
    }
  }

  /// How many more bytes of host input `receive` would take now.
  public var hostRoom: Int { Self.maxBacklog - backlog.count }

  /// Whether host input is waiting for the guest to post receive buffers.
  public var hasBacklog: Bool { !backlog.isEmpty }

  /// Bytes from the host console; returns how many were accepted (the rest
  /// would exceed `maxBacklog` and stay with the caller).
  @discardableResult
  public func receive(_ bytes: [UInt8]) -> Int {
    let n = min(bytes.count, Self.maxBacklog - backlog.count)
    backlog += bytes.prefix(n)
    deliverInput()
    return n
  }

  public func activate(
    features: UInt64, queues: [SplitVirtqueue], memory: GuestMemory, transport: VirtioTransport
  ) {
    self.queues = queues
    self.memory = memory
    self.transport = transport
    deliverInput()
  }

  public func reset() {
    queues = []
    memory = nil
  }

  public func queueNotified(_ index: Int) throws(VirtqueueError) {
    guard queues.count == 2, let memory else { return }
    if index == 0 { return try deliver() }
    guard index == 1 else { return }
    let q = queues[1]
    var served = false
    while let chain = try q.pop() {
      for piece in try DescriptorChain.hostPieces(memory, chain.readable) {
        output(UnsafeRawBufferPointer(piece))
      }
      bytesTransmitted += UInt64(chain.readableLength)
      transmitChains += 1
      try q.push(head: chain.head, written: 0)
      served = true
    }
    if served { transport?.queueUsed(1) }
  }

  private func deliverInput() {
    do { try deliver() } catch { transport?.deviceFailed(error) }
  }

  /// Moves backlog into the guest's posted receive buffers.
  private func deliver() throws(VirtqueueError) {
    guard queues.count == 2, let memory, !backlog.isEmpty else { return }
    let q = queues[0]
    var served = false
    while !backlog.isEmpty, let chain = try q.pop() {
      let n = try chain.writeBytes(memory, at: 0, Array(backlog.prefix(chain.writableLength)))
      backlog.removeFirst(n)
      try q.push(head: chain.head, written: UInt32(n))
      served = true
    }
    if served { transport?.queueUsed(0) }
  }
}
