import Memory

/// Feature bits the transport owns (virtio 1.2 §6); devices add their own below bit 24.
public enum VirtioFeature {
  public static let ringIndirectDescriptors: UInt64 = 1 << 28
  public static let ringEventIndex: UInt64 = 1 << 29
  public static let version1: UInt64 = 1 << 32
}

/// Device IDs (virtio 1.2 §5); the PCI device ID is 0x1040 + this.
public enum VirtioDeviceType: UInt16 {
  case network = 1
  case block = 2
  case console = 3
  case entropy = 4
}

/// What a device asks of its transport while it serves queues.
public protocol VirtioTransport: AnyObject {
  /// The device put chains on queue `index`'s used ring: interrupt if the driver wants one.
  func queueUsed(_ index: Int)
  /// The device cannot go on (malformed ring): DEVICE_NEEDS_RESET, logged once.
  func deviceFailed(_ error: VirtqueueError)
}

/// A virtio device behind any transport: it knows its queues and its
/// configuration space, never PCI, interrupts or engines.
public protocol VirtioDevice: AnyObject {
  var deviceType: VirtioDeviceType { get }
  /// Device-specific feature bits offered (the transport adds its own).
  var deviceFeatures: UInt64 { get }
  /// Maximum size of each queue, powers of two.
  var queueMaxSizes: [UInt16] { get }
  /// Bytes of device configuration space.
  var configSize: Int { get }
  func readConfig(offset: Int, size: Int) -> UInt64
  func writeConfig(offset: Int, size: Int, value: UInt64)
  /// The driver set DRIVER_OK with `features` negotiated; the queues are ready to serve.
  func activate(
    features: UInt64, queues: [SplitVirtqueue], memory: GuestMemory, transport: VirtioTransport)
  /// The driver notified queue `index`.
  func queueNotified(_ index: Int) throws(VirtqueueError)
  /// The driver reset the device: forget the queues.
  func reset()
  /// State the device holds beyond its transport and queues (host input waiting
  /// for receive buffers, counters), for snapshots; empty when it has none.
  func saveDeviceState() -> [UInt8]
  /// Takes a record from `saveDeviceState()` after the transport restored the
  /// queues; false (nothing changed) for a record it cannot take. It must not
  /// touch guest memory: the machine restores RAM afterwards.
  func restoreDeviceState(_ record: [UInt8]) -> Bool
}

extension VirtioDevice {
  public func saveDeviceState() -> [UInt8] { [] }
  public func restoreDeviceState(_ record: [UInt8]) -> Bool { record.isEmpty }
}

/// Little-endian field access for device configuration spaces.
func readLE(_ bytes: [UInt8], offset: Int, size: Int) -> UInt64 {
  var v: UInt64 = 0
  for i in 0..<size where offset + i >= 0 && offset + i < bytes.count {
    v |= UInt64(bytes[offset + i]) << (8 * UInt64(i))
  }
  return v
}

func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
  withUnsafeBytes(of: v.littleEndian) { out += $0 }
}

// MARK: Moving bytes between a chain and the host

extension DescriptorChain {
  /// The part [offset, offset+count) of `buffers` taken as one byte stream.
  static func slice(_ buffers: [GuestBuffer], from offset: Int, count: Int) -> [GuestBuffer] {
    var out: [GuestBuffer] = []
    var skip = offset
    var left = count
    for b in buffers where left > 0 {
      let n = Int(b.length)
      if skip >= n {
        skip -= n
        continue
      }
      let take = min(n - skip, left)
      out.append(GuestBuffer(address: b.address + UInt64(skip), length: UInt32(take)))
      skip = 0
      left -= take
    }
    return out
  }

  /// Copies `count` bytes of the readable stream starting at `offset`.
  func readBytes(_ memory: GuestMemory, from offset: Int, count: Int) throws(VirtqueueError)
    -> [UInt8]
  {
    var out: [UInt8] = []
    out.reserveCapacity(count)
    for b in Self.slice(readable, from: offset, count: count) {
      do {
        out += try memory.readBytes(GuestPhysicalAddress(b.address), count: Int(b.length))
      } catch {
        throw .bufferOutsideRAM(address: b.address, length: b.length)
      }
    }
    return out
  }

  /// Writes `bytes` into the writable stream at `offset`; returns how many fit.
  @discardableResult
  func writeBytes(_ memory: GuestMemory, at offset: Int, _ bytes: [UInt8]) throws(VirtqueueError)
    -> Int
  {
    var done = 0
    for b in Self.slice(writable, from: offset, count: bytes.count) {
      do {
        try bytes[done..<(done + Int(b.length))].withUnsafeBytes {
          try memory.write(GuestPhysicalAddress(b.address), from: $0)
        }
      } catch {
        throw .bufferOutsideRAM(address: b.address, length: b.length)
      }
      done += Int(b.length)
    }
    return done
  }

  /// Host pointers of the given buffers, in order, for vectored I/O.
  static func hostPieces(_ memory: GuestMemory, _ buffers: [GuestBuffer]) throws(VirtqueueError)
    -> [UnsafeMutableRawBufferPointer]
  {
    var out: [UnsafeMutableRawBufferPointer] = []
    for b in buffers {
      do {
        try memory.forEachHostPiece(GuestPhysicalAddress(b.address), count: Int(b.length)) {
          out.append(UnsafeMutableRawBufferPointer(start: $0, count: $1))
        }
      } catch {
        throw .bufferOutsideRAM(address: b.address, length: b.length)
      }
    }
    return out
  }
}
