import XCTest

@testable import Devices

final class RecordingDevice: PortIODevice, MMIODevice {
  var writes: [(UInt64, Int, UInt64)] = []
  var readValue: UInt64 = 0x42
  func ioRead(offset: UInt16, size: Int) -> UInt32 { UInt32(readValue) + UInt32(offset) }
  func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    writes.append((UInt64(offset), size, UInt64(value)))
  }
  func mmioRead(offset: UInt64, size: Int) -> UInt64 { readValue + offset }
  func mmioWrite(offset: UInt64, size: Int, value: UInt64) { writes.append((offset, size, value)) }
}

final class BusTests: XCTestCase {
  func testPortDispatchUsesOffsets() throws {
    let bus = PortIOBus()
    let d = RecordingDevice()
    try bus.register(d, ports: 0x3F8...0x3FF, name: "d")
    XCTAssertEqual(bus.read(port: 0x3FA, size: 1), 0x44)
    bus.write(port: 0x3FF, size: 1, value: 7)
    XCTAssertEqual(d.writes.first?.0, 7)
  }

  func testOverlappingPortRangesAreRejected() throws {
    let bus = PortIOBus()
    try bus.register(RecordingDevice(), ports: 0x60...0x64, name: "a")
    XCTAssertThrowsError(try bus.register(RecordingDevice(), ports: 0x64...0x65, name: "b")) {
      XCTAssertEqual($0 as? BusError, .overlap(new: "b", existing: "a", at: 0x64))
    }
  }

  func testUnassignedReadsAllOnes() {
    let bus = PortIOBus()
    XCTAssertEqual(bus.read(port: 0x1234, size: 1), 0xFF)
    XCTAssertEqual(bus.read(port: 0x1234, size: 2), 0xFFFF)
    XCTAssertEqual(bus.read(port: 0x1234, size: 4), 0xFFFF_FFFF)
    bus.write(port: 0x1234, size: 1, value: 1)  // dropped, no crash
    let mmio = MMIOBus()
    XCTAssertEqual(mmio.read(address: 0xD000_0000, size: 4), 0xFFFF_FFFF)
    XCTAssertEqual(mmio.read(address: 0xD000_0000, size: 8), UInt64.max)
  }

  func testMMIODispatchAndOverlap() throws {
    let bus = MMIOBus()
    let a = RecordingDevice()
    try bus.register(a, base: 0xFEC0_0000, size: 0x1000, name: "ioapic")
    try bus.register(RecordingDevice(), base: 0xFEE0_0000, size: 0x1000, name: "lapic")
    XCTAssertEqual(bus.read(address: 0xFEC0_0010, size: 4), 0x52)
    bus.write(address: 0xFEC0_0FFF, size: 1, value: 9)
    XCTAssertEqual(a.writes.first?.0, 0xFFF)
    XCTAssertThrowsError(
      try bus.register(RecordingDevice(), base: 0xFEC0_0800, size: 0x1000, name: "x"))
    XCTAssertThrowsError(try bus.register(RecordingDevice(), base: 0, size: 0, name: "empty"))
    XCTAssertEqual(bus.read(address: 0xFEC0_1000, size: 4), 0xFFFF_FFFF)
  }

  /// The bus keeps a second, access-only table (`routes`): it must follow every
  /// register and unregister, a moved BAR included.
  func testMMIOAccessesFollowUnregisterAndMoves() throws {
    let bus = MMIOBus()
    let a = RecordingDevice()
    let b = RecordingDevice()
    b.readValue = 0x100
    try bus.register(a, base: 0xE000_0000, size: 0x1000, name: "bar-a")
    try bus.register(b, base: 0xD000_0000, size: 0x1000, name: "bar-b")
    XCTAssertEqual(bus.read(address: 0xD000_0004, size: 4), 0x104)
    bus.unregister(a)
    XCTAssertEqual(bus.read(address: 0xE000_0000, size: 4), 0xFFFF_FFFF)
    XCTAssertNil(bus.name(at: 0xE000_0000))
    try bus.register(a, base: 0xC000_0000, size: 0x1000, name: "bar-a moved")
    XCTAssertEqual(bus.read(address: 0xC000_0008, size: 4), 0x4A)
    XCTAssertEqual(bus.name(at: 0xC000_0008), "bar-a moved")
    XCTAssertEqual(bus.read(address: 0xD000_0004, size: 4), 0x104)
    bus.write(address: 0xC000_0010, size: 4, value: 5)
    XCTAssertEqual(a.writes.last?.0, 0x10)
  }

  /// A port polled again and again is warned about once, and still reads as all-ones.
  func testRepeatedUnassignedPortIsWarnedOnce() {
    let bus = PortIOBus()
    for _ in 0..<3 { XCTAssertEqual(bus.read(port: 0x80, size: 4), 0xFFFF_FFFF) }
    bus.write(port: 0x80, size: 1, value: 0)
    XCTAssertEqual(bus.warned.seen, [0x80])
    XCTAssertEqual(bus.read(port: 0x81, size: 1), 0xFF)
    XCTAssertEqual(bus.warned.seen, [0x80, 0x81])
  }

  func testUnassignedMMIOWarningsStayBounded() {
    let bus = MMIOBus()
    for i in 0..<UInt64(5000) { _ = bus.read(address: 0xD000_0000 + i * 8, size: 4) }
    XCTAssertEqual(
      bus.warned.seen.count, bus.warned.capacity, "a scanning guest must not grow host memory")
  }

  func testDebugExitStatus() {
    let c = MachineControl()
    let d = DebugExitDevice(control: c)
    d.ioWrite(offset: 0, size: 4, value: 0)
    XCTAssertEqual(c.stopRequest, .debugExit(status: 1))
    let c2 = MachineControl()
    DebugExitDevice(control: c2).ioWrite(offset: 0, size: 1, value: 0x21)
    XCTAssertEqual(c2.stopRequest, .debugExit(status: 0x43))
  }

  func testI8042ResetAndSelfTest() {
    let c = MachineControl()
    let k = I8042Device(control: c)
    k.ioWrite(offset: 4, size: 1, value: 0xAA)
    XCTAssertEqual(k.ioRead(offset: 4, size: 1) & 1, 1, "output buffer full after self-test")
    XCTAssertEqual(k.ioRead(offset: 0, size: 1), 0x55)
    XCTAssertNil(c.stopRequest)
    k.ioWrite(offset: 4, size: 1, value: 0xFE)
    XCTAssertEqual(c.stopRequest, .reset)
  }

  func testI8042OutputPortResetLine() {
    let c = MachineControl()
    let k = I8042Device(control: c)
    k.ioWrite(offset: 4, size: 1, value: 0xD1)
    k.ioWrite(offset: 0, size: 1, value: 0xDF)  // A20 on, reset line high: no reset
    XCTAssertNil(c.stopRequest)
    k.ioWrite(offset: 4, size: 1, value: 0xD1)
    k.ioWrite(offset: 0, size: 1, value: 0xDE)
    XCTAssertEqual(c.stopRequest, .reset)
  }
}

/// A guest that sweeps unassigned addresses must not grow host memory (issue 8).
final class BusWarningBoundTests: XCTestCase {
  func testUnassignedMMIOWarningsAreBounded() {
    let bus = MMIOBus()
    for i in 0..<100_000 as Range<UInt64> {
      XCTAssertEqual(bus.read(address: 0xE000_0000 + i * 8, size: 4), 0xFFFF_FFFF)
      bus.write(address: 0xF000_0000 + i * 8, size: 4, value: 0)
    }
    XCTAssertLessThanOrEqual(bus.warned.seen.count, bus.warned.capacity)
    XCTAssertGreaterThan(bus.warned.seen.count, 0)
  }

  func testUnassignedPortWarningsAreBounded() {
    let bus = PortIOBus()
    for p in 0...UInt16.max { _ = bus.read(port: p, size: 1) }
    XCTAssertLessThanOrEqual(bus.warned.seen.count, bus.warned.capacity)
  }
}
