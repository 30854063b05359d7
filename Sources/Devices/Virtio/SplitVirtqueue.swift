import Memory
import Synchronization

/// Why a virtqueue cannot be used any more. Each is the driver's fault (or a
/// hostile guest's): the transport marks the device DEVICE_NEEDS_RESET and
/// logs the reason once.
public enum VirtqueueError: Error, Equatable, CustomStringConvertible {
  case ringOutsideRAM(String)
  case availableIndexJump(avail: UInt16, lastSeen: UInt16, size: UInt16)
  case descriptorIndex(UInt16, size: UInt16)
  case chainTooLong(limit: Int)
  case bufferOutsideRAM(address: UInt64, length: UInt32)
  case readableAfterWritable
  case badIndirectTable(String)
  case chainTooLarge
  case malformedRequest(String)

  public var description: String {
    switch self {
    case .ringOutsideRAM(let s): return "virtqueue ring outside guest RAM (\(s))"
    case .availableIndexJump(let a, let l, let s):
      return "available index \(a) is more than the queue size \(s) ahead of \(l)"
    case .descriptorIndex(let i, let s): return "descriptor index \(i) outside a table of \(s)"
    case .chainTooLong(let n): return "descriptor chain longer than \(n) (a loop?)"
    case .bufferOutsideRAM(let a, let n):
      return "buffer 0x\(String(a, radix: 16)) + \(n) is not guest RAM"
    case .readableAfterWritable: return "device-readable descriptor after a device-writable one"
    case .badIndirectTable(let s): return "bad indirect descriptor table: \(s)"
    case .chainTooLarge: return "descriptor chain larger than 4 GiB"
    case .malformedRequest(let s): return s
    }
  }
}

/// One guest buffer of a descriptor chain, checked to lie in guest RAM.
public struct GuestBuffer: Equatable, Sendable {
  public var address: UInt64
  public var length: UInt32
  public init(address: UInt64, length: UInt32) {
    self.address = address
    self.length = length
  }
}

/// A popped descriptor chain: the driver's buffers, readable ones first.
public struct DescriptorChain: Equatable {
  public var head: UInt16
  public var readable: [GuestBuffer] = []
  public var writable: [GuestBuffer] = []
  public var readableLength: Int { readable.reduce(0) { $0 + Int($1.length) } }
  public var writableLength: Int { writable.reduce(0) { $0 + Int($1.length) } }
}

/// A split virtqueue (virtio 1.2 §2.7) as the device sees it: descriptor
/// table, available ring (driver area) and used ring (device area) in guest
/// memory, reached only through `GuestMemory`'s checked accessors. Every
/// index and length the guest controls is validated before use, so a bad
/// ring throws `VirtqueueError` instead of reading outside guest RAM.
public final class SplitVirtqueue {
  public static let descriptorSize: UInt64 = 16

  private enum DescFlag {
    static let next: UInt16 = 1
    static let write: UInt16 = 2
    static let indirect: UInt16 = 4
  }
  /// Available-ring flag: the driver does not want interrupts (ignored with EVENT_IDX).
  static let noInterrupt: UInt16 = 1

  public let maxSize: UInt16
  // Driver-programmed registers, set through the transport before `enable`.
  public var size: UInt16
  public var descriptorTable: UInt64 = 0
  public var driverArea: UInt64 = 0
  public var deviceArea: UInt64 = 0
  public var msixVector: UInt16 = 0xFFFF
  public internal(set) var isReady = false
  /// VIRTIO_F_RING_INDIRECT_DESC and VIRTIO_F_RING_EVENT_IDX as negotiated.
  public var indirectAllowed = false
  public var eventIndex = false

  private let memory: GuestMemory
  var lastAvail: UInt16 = 0
  var used: UInt16 = 0
  /// Used index at the last interrupt decision (EVENT_IDX's old index).
  var usedAtLastSignal: UInt16 = 0

  public init(maxSize: UInt16, memory: GuestMemory) {
    precondition(maxSize > 0 && maxSize & (maxSize - 1) == 0, "queue size is a power of two")
    self.maxSize = maxSize
    self.size = maxSize
    self.memory = memory
  }

  public func reset() {
    size = maxSize
    descriptorTable = 0
    driverArea = 0
    deviceArea = 0
    msixVector = 0xFFFF
    isReady = false
    lastAvail = 0
    used = 0
    usedAtLastSignal = 0
  }

  /// Checks the size, alignment and that all three areas are guest RAM, then
  /// marks the queue ready. Throws without enabling it otherwise.
  public func enable() throws(VirtqueueError) {
    let n = UInt64(size)
    guard size > 0, size <= maxSize, size & (size - 1) == 0 else {
      throw .ringOutsideRAM("queue size \(size) is not a power of two up to \(maxSize)")
    }
    let areas: [(String, UInt64, UInt64, UInt64)] = [
      ("descriptor table", descriptorTable, 16 * n, 16),
      ("driver area", driverArea, 6 + 2 * n, 2),
      ("device area", deviceArea, 6 + 8 * n, 4),
    ]
    for (name, base, length, align) in areas {
      guard base % align == 0 else { throw .ringOutsideRAM("\(name) misaligned") }
      guard memory.isRAM(GuestPhysicalAddress(base), length: length) else {
        throw .ringOutsideRAM("\(name) at 0x\(String(base, radix: 16))")
      }
    }
    isReady = true
  }

  // MARK: Driver area

  private func load16(_ a: UInt64) throws(VirtqueueError) -> UInt16 {
    do { return try memory.read(GuestPhysicalAddress(a), as: UInt16.self) } catch {
      throw .ringOutsideRAM("0x\(String(a, radix: 16))")
    }
  }

  private func store16(_ a: UInt64, _ v: UInt16) throws(VirtqueueError) {
    do { try memory.write(GuestPhysicalAddress(a), value: v) } catch {
      throw .ringOutsideRAM("0x\(String(a, radix: 16))")
    }
  }

  /// Whether the driver has made chains available that we have not popped.
  public func hasAvailable() throws(VirtqueueError) -> Bool {
    guard isReady else { return false }
    let avail = try load16(driverArea + 2)
    let pending = avail &- lastAvail
    guard pending <= size else {
      throw .availableIndexJump(avail: avail, lastSeen: lastAvail, size: size)
    }
    return pending != 0
  }

  /// Pops the next available chain, or nil when the ring is empty.
  public func pop() throws(VirtqueueError) -> DescriptorChain? {
    guard try hasAvailable() else { return nil }
    atomicMemoryFence(ordering: .acquiring)  // read the ring entry after the index
    let slot = driverArea + 4 + 2 * UInt64(lastAvail % size)
    let head = try load16(slot)
    lastAvail &+= 1
    if eventIndex {
      // avail_event: ask for a notification as soon as the driver adds the next chain.
      try store16(deviceArea + 4 + 8 * UInt64(size), lastAvail)
    }
    return try walkChain(head: head)
  }

  /// Gives back a chain the device popped but cannot serve yet (no rx data).
  public func undoPop() {
    lastAvail &-= 1
  }

  private struct Descriptor {
    var address: UInt64
    var length: UInt32
    var flags: UInt16
    var next: UInt16
  }

  private func descriptor(at a: UInt64) throws(VirtqueueError) -> Descriptor {
    var raw = (UInt64(0), UInt64(0))
    do {
      try withUnsafeMutableBytes(of: &raw) { try memory.read(GuestPhysicalAddress(a), into: $0) }
    } catch {
      throw .ringOutsideRAM("descriptor at 0x\(String(a, radix: 16))")
    }
    let w = UInt64(littleEndian: raw.1)
    return Descriptor(
      address: UInt64(littleEndian: raw.0), length: UInt32(truncatingIfNeeded: w),
      flags: UInt16(truncatingIfNeeded: w >> 32), next: UInt16(truncatingIfNeeded: w >> 48))
  }

  /// Follows a chain from `head`, through at most one indirect table, checking
  /// indices, the loop bound (no more descriptors than the table holds),
  /// direction order and that each buffer is guest RAM.
  private func walkChain(head: UInt16) throws(VirtqueueError) -> DescriptorChain {
    var chain = DescriptorChain(head: head)
    var total: UInt64 = 0
    func add(_ d: Descriptor) throws(VirtqueueError) {
      guard memory.isRAM(GuestPhysicalAddress(d.address), length: UInt64(max(d.length, 1))) else {
        throw .bufferOutsideRAM(address: d.address, length: d.length)
      }
      total += UInt64(d.length)
      guard total <= UInt64(UInt32.max) else { throw .chainTooLarge }
      if d.length == 0 { return }
      let b = GuestBuffer(address: d.address, length: d.length)
      if d.flags & DescFlag.write != 0 {
        chain.writable.append(b)
      } else {
        guard chain.writable.isEmpty else { throw .readableAfterWritable }
        chain.readable.append(b)
      }
    }
    var index = head
    var steps = 0
    while true {
      guard index < size else { throw .descriptorIndex(index, size: size) }
      steps += 1
      guard steps <= Int(size) else { throw .chainTooLong(limit: Int(size)) }
      let d = try descriptor(at: descriptorTable + 16 * UInt64(index))
      if d.flags & DescFlag.indirect != 0 {
        guard indirectAllowed else { throw .badIndirectTable("INDIRECT_DESC not negotiated") }
        guard d.flags & DescFlag.next == 0 else {
          throw .badIndirectTable("indirect descriptor with NEXT set")
        }
        try walkIndirect(d, add)
        return chain
      }
      try add(d)
      guard d.flags & DescFlag.next != 0 else { return chain }
      index = d.next
    }
  }

  private func walkIndirect(
    _ table: Descriptor, _ add: (Descriptor) throws(VirtqueueError) -> Void
  ) throws(VirtqueueError) {
    guard table.length > 0, UInt64(table.length) % Self.descriptorSize == 0 else {
      throw .badIndirectTable("length \(table.length) is not a multiple of 16")
    }
    let count = UInt64(table.length) / Self.descriptorSize
    // The spec caps an indirect table at the queue size... loosely; Linux uses
    // up to seg_max entries. 65536 bounds the walk whatever the guest writes.
    guard count <= 65536 else { throw .badIndirectTable("\(count) entries") }
    guard memory.isRAM(GuestPhysicalAddress(table.address), length: UInt64(table.length)) else {
      throw .bufferOutsideRAM(address: table.address, length: table.length)
    }
    var index: UInt64 = 0
    var steps: UInt64 = 0
    while true {
      guard index < count else {
        throw .descriptorIndex(UInt16(truncatingIfNeeded: index), size: UInt16(clamping: count))
      }
      steps += 1
      guard steps <= count else { throw .chainTooLong(limit: Int(count)) }
      let d = try descriptor(at: table.address + 16 * index)
      guard d.flags & DescFlag.indirect == 0 else {
        throw .badIndirectTable("nested indirect descriptor")
      }
      try add(d)
      guard d.flags & DescFlag.next != 0 else { return }
      index = UInt64(d.next)
    }
  }

  // MARK: Device area

  /// Returns a chain to the driver with `written` bytes placed in its writable buffers.
  public func push(head: UInt16, written: UInt32) throws(VirtqueueError) {
    let elem = deviceArea + 4 + 8 * UInt64(used % size)
    do {
      try memory.write(GuestPhysicalAddress(elem), value: UInt32(head))
      try memory.write(GuestPhysicalAddress(elem + 4), value: written)
    } catch {
      throw .ringOutsideRAM("used ring at 0x\(String(elem, radix: 16))")
    }
    used &+= 1
    atomicMemoryFence(ordering: .releasing)  // the element before the index
    try store16(deviceArea + 2, used)
  }

  /// Whether the driver wants an interrupt for what was pushed since the last
  /// call (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX).
  public func needsInterrupt() throws(VirtqueueError) -> Bool {
    let old = usedAtLastSignal
    usedAtLastSignal = used
    guard old != used else { return false }
    atomicMemoryFence(ordering: .sequentiallyConsistent)
    if eventIndex {
      let usedEvent = try load16(driverArea + 4 + 2 * UInt64(size))
      // vring_need_event: did the new entries pass used_event?
      return used &- usedEvent &- 1 < used &- old
    }
    return try load16(driverArea) & Self.noInterrupt == 0
  }
}
