import Memory
import TestSupport
import XCTest

@testable import Devices

final class MSIRecorder: MSIDelivery {
  var messages: [(UInt64, UInt32)] = []
  func deliver(address: UInt64, data: UInt32) { messages.append((address, data)) }
}

/// Drives a `VirtioPCI` the way a driver does, through config space and BAR0.
final class VirtioPCITests: XCTestCase {
  var memory: GuestMemory!
  var pci: VirtioPCI!
  var ring: RingDriver!
  let lines = LineRecorder()
  let msi = MSIRecorder()
  var disk: DiskImage!

  override func setUpWithError() throws {
    memory = try GuestMemory(size: 2 << 20)
    disk = try DiskImage(path: try temporaryImage(self, bytes: 64 * 1024), readOnly: false)
    pci = try VirtioPCI(
      device: VirtioBlock(disk: disk, serial: "t"), memory: memory, name: "test-blk")
    pci.intx = IRQLine(11, lines: lines)
    pci.msix.delivery = msi
    ring = try RingDriver(memory: memory, size: 16)
  }

  func read(_ offset: UInt64, _ size: Int) -> UInt64 {
    pci.barRead(bar: 0, offset: offset, size: size)
  }
  func write(_ offset: UInt64, _ size: Int, _ value: UInt64) {
    pci.barWrite(bar: 0, offset: offset, size: size, value: value)
  }
  var status: UInt8 { UInt8(read(0x14, 1)) }

  /// ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns whether the device accepted them.
  @discardableResult
  func negotiate(_ features: UInt64) -> Bool {
    write(0x14, 1, 0)
    write(0x14, 1, 1)
    write(0x14, 1, 3)
    for sel in 0..<2 as Range<UInt64> {
      write(0x08, 4, sel)
      write(0x0C, 4, features >> (32 * sel) & 0xFFFF_FFFF)
    }
    write(0x14, 1, 0xB)
    return status & 8 != 0
  }

  func setUpQueue(size: UInt16 = 16) {
    write(0x16, 2, 0)
    write(0x18, 2, UInt64(size))
    write(0x20, 8, ring.desc)
    write(0x28, 4, ring.avail)
    write(0x2C, 4, 0)
    write(0x30, 8, ring.used)
    write(0x1C, 2, 1)
  }

  func start() {
    XCTAssertTrue(negotiate(VirtioFeature.version1))
    setUpQueue()
    write(0x14, 1, 0xF)
    XCTAssertEqual(status, 0xF)
  }

  /// A GET_ID request in the ring, then a notification of queue 0.
  func submitRequest() {
    var h: [UInt8] = []
    appendLE(&h, UInt32(8))
    appendLE(&h, UInt32(0))
    appendLE(&h, UInt64(0))
    ring.addChain([
      (ring.buffer(16, filledWith: h), 16, false), (ring.buffer(20), 20, true),
      (ring.buffer(1), 1, true),
    ])
    write(0x3000, 2, 0)
  }

  func testIdentityAndCapabilities() throws {
    XCTAssertEqual(pci.configRead(offset: 0, size: 4), 0x1042_1AF4)
    XCTAssertEqual(pci.configRead(offset: 8, size: 1), 1, "revision 1: modern only")
    var types: [UInt8] = []
    var msix = false
    var at = Int(pci.configRead(offset: 0x34, size: 1))
    while at != 0 {
      let id = pci.configRead(offset: UInt8(at), size: 1)
      if id == 0x09 { types.append(UInt8(pci.configRead(offset: UInt8(at + 3), size: 1))) }
      if id == 0x11 { msix = true }
      at = Int(pci.configRead(offset: UInt8(at + 1), size: 1))
    }
    XCTAssertEqual(types.sorted(), [1, 2, 3, 4, 5])
    XCTAssertTrue(msix)
    XCTAssertEqual(read(0x12, 2), 1, "num_queues")
    write(0x00, 4, 1)
    XCTAssertEqual(read(0x04, 4) & 1, 1, "VERSION_1 offered")
  }

  func testVersion1IsRequired() {
    XCTAssertFalse(negotiate(0), "a legacy-only driver is refused")
    XCTAssertFalse(negotiate(VirtioFeature.version1 | 1 << 40), "unknown features are refused")
    XCTAssertTrue(negotiate(VirtioFeature.version1 | VirtioFeature.ringEventIndex))
  }

  func testDriverThatNeverAcknowledgesFeatures() {
    write(0x14, 1, 1)
    write(0x14, 1, 3)
    setUpQueue()  // before FEATURES_OK: ignored
    write(0x16, 2, 0)
    XCTAssertEqual(read(0x1C, 2), 0, "queue not enabled")
    write(0x14, 1, 7)  // DRIVER_OK without FEATURES_OK
    XCTAssertNotEqual(status & VirtioPCI.Status.needsReset, 0)
    XCTAssertEqual(status & VirtioPCI.Status.driverOK, 0)
    submitRequest()
    XCTAssertEqual(ring.usedIndex, 0, "nothing served")
    write(0x14, 1, 0)
    XCTAssertEqual(status, 0, "reset clears NEEDS_RESET")
  }

  func testOutOfRangeQueueIndexAndBadSizes() {
    XCTAssertTrue(negotiate(VirtioFeature.version1))
    write(0x16, 2, 5)
    XCTAssertEqual(read(0x18, 2), 0, "queue 5 does not exist")
    write(0x18, 2, 8)
    write(0x1C, 2, 1)
    XCTAssertEqual(read(0x1C, 2), 0)
    write(0x16, 2, 0)
    XCTAssertEqual(read(0x18, 2), 256, "max size")
    setUpQueue(size: 12)  // not a power of two
    XCTAssertNotEqual(status & VirtioPCI.Status.needsReset, 0)
    XCTAssertEqual(read(0x1C, 2), 0)
  }

  func testNotificationsOnUnconfiguredQueues() {
    XCTAssertTrue(negotiate(VirtioFeature.version1))
    write(0x14, 1, 0xF)  // DRIVER_OK, queue 0 never enabled
    submitRequest()
    write(0x3000 + 4 * 7, 2, 7)  // a queue that does not exist
    write(0x3FFC, 4, 0xFFFF)
    XCTAssertEqual(ring.usedIndex, 0)
    XCTAssertEqual(status & VirtioPCI.Status.needsReset, 0, "ignored, not fatal")
  }

  func testINTxAndISR() {
    start()
    submitRequest()
    XCTAssertEqual(ring.usedIndex, 1)
    XCTAssertEqual(lines.levels[11], true)
    XCTAssertEqual(read(0x1000, 1), 1, "queue interrupt")
    XCTAssertEqual(lines.levels[11], false, "reading the ISR lowers INTx")
    XCTAssertEqual(read(0x1000, 1), 0)
  }

  func testMalformedRingNeedsResetAndRaisesConfigInterrupt() {
    start()
    ring.setDescriptor(0, address: 0x50000, length: 4, flags: 1, next: 0)  // loops onto itself
    ring.offer(0)
    write(0x3000, 2, 0)
    XCTAssertNotEqual(status & VirtioPCI.Status.needsReset, 0)
    XCTAssertEqual(read(0x1000, 1), 2, "configuration-change interrupt")
    submitRequest()
    XCTAssertEqual(ring.usedIndex, 0, "a device needing reset serves nothing")
    write(0x14, 1, 0)
    start()
    ring.availIndex = 0
    ring.nextFree = 0
    submitRequest()
    XCTAssertEqual(ring.usedIndex, 1, "works again after a reset")
  }

  func testMSIXDelivery() throws {
    // Enable MSI-X: control word bit 15 of the capability.
    let cap = pci.msix.capabilityOffset
    pci.configWrite(offset: UInt8(cap + 2), size: 2, value: 0x8000)
    // Vector 1: address and data, unmasked.
    write(0x4000 + 16, 4, 0xFEE0_0000)
    write(0x4000 + 24, 4, 0x41)
    write(0x4000 + 28, 4, 0)
    XCTAssertTrue(negotiate(VirtioFeature.version1))
    write(0x16, 2, 0)
    write(0x1A, 2, 1)
    setUpQueue()
    write(0x14, 1, 0xF)
    submitRequest()
    XCTAssertEqual(msi.messages.count, 1)
    XCTAssertEqual(msi.messages.first?.0, 0xFEE0_0000)
    XCTAssertEqual(msi.messages.first?.1, 0x41)
    XCTAssertNil(lines.levels[11], "no INTx with MSI-X on")
  }

  func testPCIConfigAccessWindow() throws {
    var at = Int(pci.configRead(offset: 0x34, size: 1))
    while at != 0 {
      if pci.configRead(offset: UInt8(at), size: 1) == 0x09,
        pci.configRead(offset: UInt8(at + 3), size: 1) == 5
      {
        break
      }
      at = Int(pci.configRead(offset: UInt8(at + 1), size: 1))
    }
    XCTAssertNotEqual(at, 0)
    pci.configWrite(offset: UInt8(at + 4), size: 1, value: 0)  // BAR0
    pci.configWrite(offset: UInt8(at + 8), size: 4, value: 0x12)  // num_queues
    pci.configWrite(offset: UInt8(at + 12), size: 4, value: 2)
    XCTAssertEqual(pci.configRead(offset: UInt8(at + 16), size: 4) & 0xFFFF, 1)
    pci.configWrite(offset: UInt8(at + 8), size: 4, value: 0x14)  // device_status
    pci.configWrite(offset: UInt8(at + 12), size: 4, value: 1)
    pci.configWrite(offset: UInt8(at + 16), size: 4, value: 1)
    XCTAssertEqual(status, 1, "a write through the window reaches the BAR")
  }

  /// Random register traffic and random rings: nothing traps, memory outside
  /// guest RAM is never touched (GuestMemory would throw, not crash).
  func testRandomDriverNeverTraps() throws {
    var rng = SeededRandom(seed: 0x7063_6966)
    let cases = 3000
    for _ in 0..<cases {
      if Int.random(in: 0..<50, using: &rng) == 0 { start() }
      let offset: UInt64 =
        [0, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000][Int.random(in: 0..<6, using: &rng)]
        + UInt64.random(in: 0..<0x40, using: &rng)
      let size = [1, 2, 4, 8][Int.random(in: 0..<4, using: &rng)]
      if Bool.random(using: &rng) {
        write(offset, size, rng.next())
      } else {
        _ = read(offset, size)
      }
      if Int.random(in: 0..<4, using: &rng) == 0 {
        ring.setDescriptor(
          UInt16.random(in: 0..<16, using: &rng), address: rng.next() % 0x20_0000,
          length: UInt32.random(in: 0...600, using: &rng),
          flags: UInt16.random(in: 0...7, using: &rng), next: UInt16.random(in: 0...17, using: &rng)
        )
        ring.offer(UInt16.random(in: 0...17, using: &rng))
        write(0x3000, 2, 0)
      }
      pci.configWrite(
        offset: UInt8.random(in: 0...255, using: &rng), size: 1,
        value: UInt32.random(in: 0...255, using: &rng))
    }
    print("virtio-pci fuzz: \(cases) random driver steps")
  }
}
