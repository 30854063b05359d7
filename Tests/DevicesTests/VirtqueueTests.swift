import Memory
import TestSupport
import XCTest

@testable import Devices

/// Plays the driver side of a split virtqueue in guest memory.
final class RingDriver {
  let memory: GuestMemory
  let queue: SplitVirtqueue
  let size: UInt16
  let desc: UInt64
  let avail: UInt64
  let used: UInt64
  var availIndex: UInt16 = 0
  var nextFree: UInt16 = 0
  /// Where `buffer(_:)` hands out guest buffers.
  var heap: UInt64 = 0x40000

  init(
    memory: GuestMemory, size: UInt16 = 16, indirect: Bool = true, eventIndex: Bool = false,
    desc: UInt64 = 0x10000, avail: UInt64 = 0x20000, used: UInt64 = 0x30000
  ) throws {
    self.desc = desc
    self.avail = avail
    self.used = used
    self.memory = memory
    self.size = size
    queue = SplitVirtqueue(maxSize: size, memory: memory)
    queue.descriptorTable = desc
    queue.driverArea = avail
    queue.deviceArea = used
    queue.indirectAllowed = indirect
    queue.eventIndex = eventIndex
    try queue.enable()
  }

  func setDescriptor(
    _ i: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0,
    table: UInt64? = nil
  ) {
    let a = (table ?? desc) + 16 * UInt64(i)
    try! memory.write(GuestPhysicalAddress(a), value: address)
    try! memory.write(GuestPhysicalAddress(a + 8), value: length)
    try! memory.write(GuestPhysicalAddress(a + 12), value: flags)
    try! memory.write(GuestPhysicalAddress(a + 14), value: next)
  }

  func buffer(_ length: Int, filledWith bytes: [UInt8] = []) -> UInt64 {
    let a = heap
    heap += UInt64((length + 15) & ~15)
    if !bytes.isEmpty { try! memory.write(GuestPhysicalAddress(a), bytes: bytes) }
    return a
  }

  /// Writes a chain of (address, length, device-writable) into free descriptors; returns the head.
  @discardableResult
  func addChain(_ parts: [(UInt64, UInt32, Bool)], offer: Bool = true) -> UInt16 {
    let head = nextFree
    for (k, p) in parts.enumerated() {
      let i = nextFree
      nextFree = (nextFree + 1) % size
      let last = k == parts.count - 1
      setDescriptor(
        i, address: p.0, length: p.1, flags: (last ? 0 : 1) | (p.2 ? 2 : 0), next: nextFree)
    }
    if offer { self.offer(head) }
    return head
  }

  func offer(_ head: UInt16) {
    try! memory.write(GuestPhysicalAddress(avail + 4 + 2 * UInt64(availIndex % size)), value: head)
    availIndex &+= 1
    try! memory.write(GuestPhysicalAddress(avail + 2), value: availIndex)
  }

  var usedIndex: UInt16 { try! memory.read(GuestPhysicalAddress(used + 2)) }
  func usedElement(_ i: UInt16) -> (id: UInt32, length: UInt32) {
    let a = used + 4 + 8 * UInt64(i % size)
    return (
      try! memory.read(GuestPhysicalAddress(a)), try! memory.read(GuestPhysicalAddress(a + 4))
    )
  }
}

final class VirtqueueTests: XCTestCase {
  func memory() throws -> GuestMemory { try GuestMemory(size: 2 << 20) }

  func testChainSplitsIntoReadableThenWritableBuffers() throws {
    let d = try RingDriver(memory: try memory())
    d.addChain([(0x50000, 16, false), (0x51000, 512, true), (0x52000, 1, true)])
    let c = try XCTUnwrap(try d.queue.pop())
    XCTAssertEqual(c.head, 0)
    XCTAssertEqual(c.readable, [GuestBuffer(address: 0x50000, length: 16)])
    XCTAssertEqual(c.writable.map(\.length), [512, 1])
    XCTAssertNil(try d.queue.pop())
    try d.queue.push(head: c.head, written: 513)
    XCTAssertEqual(d.usedIndex, 1)
    XCTAssertEqual(d.usedElement(0).id, 0)
    XCTAssertEqual(d.usedElement(0).length, 513)
  }

  func testIndirectTable() throws {
    let d = try RingDriver(memory: try memory())
    let table: UInt64 = 0x60000
    d.setDescriptor(0, address: 0x50000, length: 16, flags: 1, next: 1, table: table)
    d.setDescriptor(1, address: 0x51000, length: 8, flags: 2, table: table)
    d.addChain([(table, 32, false)])
    d.setDescriptor(0, address: table, length: 32, flags: 4)
    let c = try XCTUnwrap(try d.queue.pop())
    XCTAssertEqual(c.readableLength, 16)
    XCTAssertEqual(c.writableLength, 8)
  }

  func assertPopFails(_ d: RingDriver, _ expected: VirtqueueError, line: UInt = #line) {
    XCTAssertThrowsError(try d.queue.pop(), line: line) { e in
      XCTAssertEqual(e as? VirtqueueError, expected, line: line)
    }
  }

  func testBufferOutsideRAM() throws {
    let d = try RingDriver(memory: try memory())
    d.addChain([(0x1F_FF00, 0x200, false)])
    assertPopFails(d, .bufferOutsideRAM(address: 0x1F_FF00, length: 0x200))
    let d2 = try RingDriver(memory: try memory())
    d2.addChain([(UInt64.max - 4, 16, true)])
    assertPopFails(d2, .bufferOutsideRAM(address: UInt64.max - 4, length: 16))
  }

  func testBufferInTheMMIOHoleIsRefused() throws {
    // RAM at 0-1 MiB and 2-3 MiB: 1 MiB-2 MiB is where MMIO would be.
    let pool = try HostFramePool(bytes: 2 << 20)
    let mem = try GuestMemory(
      pool: pool,
      regions: [
        RAMRegion(start: GuestPhysicalAddress(0), size: 1 << 20),
        RAMRegion(start: GuestPhysicalAddress(2 << 20), size: 1 << 20),
      ], layout: .contiguous)
    let d = try RingDriver(memory: mem)
    d.addChain([(0xF_FF00, 0x200, false)])  // crosses from RAM into the hole
    assertPopFails(d, .bufferOutsideRAM(address: 0xF_FF00, length: 0x200))
    d.addChain([(0x18_0000, 4, true)])
    assertPopFails(d, .bufferOutsideRAM(address: 0x18_0000, length: 4))
  }

  func testLoopingChain() throws {
    let d = try RingDriver(memory: try memory())
    d.setDescriptor(0, address: 0x50000, length: 4, flags: 1, next: 1)
    d.setDescriptor(1, address: 0x50000, length: 4, flags: 1, next: 0)
    d.offer(0)
    assertPopFails(d, .chainTooLong(limit: 16))
  }

  func testLoopInsideAnIndirectTable() throws {
    let d = try RingDriver(memory: try memory())
    let table: UInt64 = 0x60000
    d.setDescriptor(0, address: 0x50000, length: 4, flags: 1, next: 1, table: table)
    d.setDescriptor(1, address: 0x50000, length: 4, flags: 1, next: 0, table: table)
    d.setDescriptor(0, address: table, length: 32, flags: 4)
    d.offer(0)
    assertPopFails(d, .chainTooLong(limit: 2))
  }

  func testDescriptorIndexOutOfRange() throws {
    let d = try RingDriver(memory: try memory())
    d.setDescriptor(0, address: 0x50000, length: 4, flags: 1, next: 16)
    d.offer(0)
    assertPopFails(d, .descriptorIndex(16, size: 16))
    d.offer(200)
    assertPopFails(d, .descriptorIndex(200, size: 16))
  }

  func testWrongDirectionOrder() throws {
    let d = try RingDriver(memory: try memory())
    d.addChain([(0x50000, 4, true), (0x51000, 4, false)])
    assertPopFails(d, .readableAfterWritable)
  }

  func testAvailableIndexRunningAhead() throws {
    let d = try RingDriver(memory: try memory())
    try d.memory.write(GuestPhysicalAddress(d.avail + 2), value: UInt16(17))
    assertPopFails(d, .availableIndexJump(avail: 17, lastSeen: 0, size: 16))
  }

  func testBadIndirectTables() throws {
    let table: UInt64 = 0x60000
    let cases: [(UInt64, UInt32, UInt16, Bool, VirtqueueError)] = [
      (table, 20, 4, true, .badIndirectTable("length 20 is not a multiple of 16")),
      (table, 0, 4, true, .badIndirectTable("length 0 is not a multiple of 16")),
      (table, 16, 4 | 1, true, .badIndirectTable("indirect descriptor with NEXT set")),
      (table, 16, 4, false, .badIndirectTable("INDIRECT_DESC not negotiated")),
      (0x1F_FFF0, 32, 4, true, .bufferOutsideRAM(address: 0x1F_FFF0, length: 32)),
    ]
    for (address, length, flags, allowed, expected) in cases {
      let d = try RingDriver(memory: try memory(), indirect: allowed)
      d.setDescriptor(0, address: 0x50000, length: 4, flags: 0, table: table)
      d.setDescriptor(0, address: address, length: length, flags: flags)
      d.offer(0)
      assertPopFails(d, expected)
    }
    let d = try RingDriver(memory: try memory())
    d.setDescriptor(0, address: table, length: 16, flags: 4, table: table)
    d.setDescriptor(0, address: table, length: 16, flags: 4)
    d.offer(0)
    assertPopFails(d, .badIndirectTable("nested indirect descriptor"))
  }

  func testEnableRefusesBadSizesAndRings() throws {
    let mem = try memory()
    let q = SplitVirtqueue(maxSize: 256, memory: mem)
    q.descriptorTable = 0x10000
    q.driverArea = 0x20000
    q.deviceArea = 0x30000
    for bad in [0, 3, 100, 512] as [UInt16] {
      q.size = bad
      XCTAssertThrowsError(try q.enable(), "size \(bad)")
      XCTAssertFalse(q.isReady)
    }
    q.size = 128
    q.deviceArea = 0x30002
    XCTAssertThrowsError(try q.enable(), "misaligned used ring")
    q.deviceArea = 0x1F_FF00
    XCTAssertThrowsError(try q.enable(), "used ring past RAM")
    q.deviceArea = 0x30000
    try q.enable()
    XCTAssertTrue(q.isReady)
  }

  func testNoInterruptFlagAndEventIndex() throws {
    let d = try RingDriver(memory: try memory())
    d.addChain([(0x50000, 4, true)])
    try d.queue.push(head: try XCTUnwrap(try d.queue.pop()).head, written: 4)
    XCTAssertTrue(try d.queue.needsInterrupt())
    XCTAssertFalse(try d.queue.needsInterrupt(), "nothing new since")
    try d.memory.write(GuestPhysicalAddress(d.avail), value: UInt16(1))  // NO_INTERRUPT
    d.addChain([(0x50000, 4, true)])
    try d.queue.push(head: try XCTUnwrap(try d.queue.pop()).head, written: 4)
    XCTAssertFalse(try d.queue.needsInterrupt())

    let e = try RingDriver(memory: try memory(), eventIndex: true)
    let usedEvent = GuestPhysicalAddress(e.avail + 4 + 2 * 16)
    try e.memory.write(usedEvent, value: UInt16(1))  // interrupt when used idx passes 1
    for _ in 0..<3 { e.addChain([(0x50000, 4, true)]) }
    let availEvent = GuestPhysicalAddress(e.used + 4 + 8 * 16)
    try e.queue.push(head: try XCTUnwrap(try e.queue.pop()).head, written: 4)
    XCTAssertEqual(try e.memory.read(availEvent, as: UInt16.self), 1)
    XCTAssertFalse(try e.queue.needsInterrupt(), "used idx 1 has not passed used_event 1")
    try e.queue.push(head: try XCTUnwrap(try e.queue.pop()).head, written: 4)
    XCTAssertTrue(try e.queue.needsInterrupt(), "used idx 2 passed used_event 1")
    try e.queue.push(head: try XCTUnwrap(try e.queue.pop()).head, written: 4)
    XCTAssertFalse(try e.queue.needsInterrupt(), "used_event still 1")
  }

  /// Random descriptor tables, available rings and indices: the parser may
  /// throw, but never traps, and every buffer it returns lies in guest RAM.
  func testRandomRingsNeverTrap() throws {
    var rng = SeededRandom(seed: 0x7669_7274)
    let mem = try memory()
    let cases = 20000
    var popped = 0
    var refused = 0
    for _ in 0..<cases {
      let size = UInt16(1) << UInt16.random(in: 0...5, using: &rng)
      let d = try RingDriver(
        memory: mem, size: size, indirect: Bool.random(using: &rng),
        eventIndex: Bool.random(using: &rng))
      for i in 0..<Int(size) {
        // Mostly plausible values, with wild ones mixed in.
        let address: UInt64 =
          Bool.random(using: &rng)
          ? UInt64.random(in: 0x50000...0x70000, using: &rng) & ~0xF
          : rng.next()
        let length: UInt32 =
          Bool.random(using: &rng)
          ? UInt32.random(in: 0...96, using: &rng) : UInt32(truncatingIfNeeded: rng.next())
        let flags = UInt16.random(in: 0...7, using: &rng)
        let next = UInt16.random(in: 0...(size + 2), using: &rng)
        d.setDescriptor(UInt16(i), address: address, length: length, flags: flags, next: next)
        d.setDescriptor(
          UInt16(i), address: rng.next(), length: UInt32(truncatingIfNeeded: rng.next()),
          flags: UInt16(truncatingIfNeeded: rng.next()),
          next: UInt16(truncatingIfNeeded: rng.next()),
          table: 0x60000)
      }
      for i in 0..<Int(size) {
        try mem.write(
          GuestPhysicalAddress(d.avail + 4 + 2 * UInt64(i)),
          value: UInt16.random(in: 0...(size + 1), using: &rng))
      }
      try mem.write(
        GuestPhysicalAddress(d.avail + 2), value: UInt16.random(in: 0...(size + 2), using: &rng))
      do {
        while let c = try d.queue.pop() {
          for b in c.readable + c.writable {
            XCTAssertTrue(mem.isRAM(GuestPhysicalAddress(b.address), length: UInt64(b.length)))
          }
          try d.queue.push(head: c.head, written: UInt32(c.writableLength))
          _ = try d.queue.needsInterrupt()
          popped += 1
        }
      } catch {
        refused += 1
      }
    }
    print("virtqueue fuzz: \(cases) rings, \(popped) chains served, \(refused) rings refused")
    XCTAssertGreaterThan(popped, 0)
    XCTAssertGreaterThan(refused, 0)
  }
}
