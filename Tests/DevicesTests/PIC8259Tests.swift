import XCTest

@testable import Devices

final class PIC8259Tests: XCTestCase {
  var pic = PIC8259Pair()

  func out(_ port: UInt16, _ v: UInt8) { pic.ioWrite(offset: port, size: 1, value: UInt32(v)) }
  func inb(_ port: UInt16) -> UInt8 { UInt8(truncatingIfNeeded: pic.ioRead(offset: port, size: 1)) }

  /// Linux's init_8259A (x86-64: vectors 0x30 and 0x38).
  func linuxInit(autoEOI: Bool = false) {
    out(0x21, 0xFF)
    out(0xA1, 0xFF)
    out(0x20, 0x11)
    out(0x21, 0x30)
    out(0x21, 0x04)
    out(0x21, autoEOI ? 0x03 : 0x01)
    out(0xA0, 0x11)
    out(0xA1, 0x38)
    out(0xA1, 0x02)
    out(0xA1, 0x01)
    out(0x21, 0x00)
    out(0xA1, 0x00)
  }

  func testProgrammedAsFirmwareLeavesIt() {
    pic.programAsFirmwareLeavesIt()
    pic.setLevel(irq: 11, high: true)
    XCTAssertEqual(pic.acknowledgeInterrupt(), 0x73, "IRQ11 at the BIOS's slave base 0x70")
    pic.setLevel(irq: 0, high: true)
    XCTAssertEqual(pic.acknowledgeInterrupt(), 0x08, "IRQ0 at the master base 0x08")
    XCTAssertEqual(inb(0x21), 0, "inputs unmasked")
  }

  func testRegistersOnBusAtAbsolutePorts() throws {
    let bus = PortIOBus()
    try pic.register(on: bus)
    bus.write(port: 0x21, size: 1, value: 0x5A)
    XCTAssertEqual(bus.read(port: 0x21, size: 1), 0x5A)
    bus.write(port: 0xA1, size: 1, value: 0xA5)
    XCTAssertEqual(bus.read(port: 0xA1, size: 1), 0xA5)
    bus.write(port: 0x4D1, size: 1, value: 0xFF)
    XCTAssertEqual(bus.read(port: 0x4D1, size: 1), 0xDE, "IRQ8 and IRQ13 stay edge-triggered")
  }

  func testLinuxProbeReadsBackMask() {
    out(0xA1, 0xFF)
    out(0x21, 0xFB)
    XCTAssertEqual(inb(0x21), 0xFB)
  }

  func testInitSequenceSetsVectorsAndDeliversEdge() {
    linuxInit()
    XCTAssertFalse(pic.hasPendingInterrupt)
    pic.setLevel(irq: 4, high: true)
    XCTAssertTrue(pic.hasPendingInterrupt)
    XCTAssertEqual(pic.acknowledge(), 0x34)
    XCTAssertEqual(pic.master.isr, 0x10)
    XCTAssertEqual(pic.master.irr & 0x10, 0, "edge request cleared by INTA")
    XCTAssertFalse(pic.hasPendingInterrupt)
    out(0x20, 0x20)  // non-specific EOI
    XCTAssertEqual(pic.master.isr, 0)
    XCTAssertFalse(pic.hasPendingInterrupt, "line still high: no new edge")
    pic.setLevel(irq: 4, high: false)
    pic.setLevel(irq: 4, high: true)
    XCTAssertEqual(pic.acknowledge(), 0x34)
  }

  func testEdgeLatchedPulseSurvivesLineDrop() {
    linuxInit()
    pic.setLevel(irq: 0, high: true)
    pic.setLevel(irq: 0, high: false)
    XCTAssertTrue(pic.hasPendingInterrupt)
    XCTAssertEqual(pic.acknowledge(), 0x30)
  }

  func testMaskBlocksAndUnmaskReleases() {
    linuxInit()
    out(0x21, 0x01)
    pic.setLevel(irq: 0, high: true)
    XCTAssertFalse(pic.hasPendingInterrupt)
    XCTAssertEqual(pic.master.irr & 1, 1, "IRR records a masked request")
    out(0x21, 0x00)
    XCTAssertTrue(pic.hasPendingInterrupt)
  }

  func testPriorityAndNesting() {
    linuxInit()
    pic.setLevel(irq: 3, high: true)
    pic.setLevel(irq: 1, high: true)
    XCTAssertEqual(pic.acknowledge(), 0x31, "IRQ1 beats IRQ3")
    XCTAssertFalse(pic.hasPendingInterrupt, "IRQ3 is lower than IRQ1 in service")
    pic.setLevel(irq: 0, high: true)
    XCTAssertEqual(pic.acknowledge(), 0x30, "IRQ0 nests above IRQ1")
    out(0x20, 0x20)
    XCTAssertEqual(pic.master.isr, 0x02, "non-specific EOI ends IRQ0 first")
    out(0x20, 0x61)  // specific EOI for IRQ1
    XCTAssertEqual(pic.master.isr, 0)
    XCTAssertEqual(pic.acknowledge(), 0x33)
  }

  func testSlaveCascadeAndEOI() {
    linuxInit()
    pic.setLevel(irq: 12, high: true)
    XCTAssertTrue(pic.hasPendingInterrupt)
    XCTAssertEqual(pic.acknowledge(), 0x3C)
    XCTAssertEqual(pic.slave.isr, 0x10)
    XCTAssertEqual(pic.master.isr, 0x04)
    pic.setLevel(irq: 12, high: false)
    pic.setLevel(irq: 8, high: true)
    XCTAssertFalse(pic.hasPendingInterrupt, "cascade in service blocks the slave")
    // Linux: specific EOI to the slave, then to the master's IR2.
    out(0xA0, 0x64)
    out(0x20, 0x62)
    XCTAssertEqual(pic.acknowledge(), 0x38)
  }

  func testSlaveMaskedThroughCascadeMask() {
    linuxInit()
    out(0x21, 0x04)
    pic.setLevel(irq: 9, high: true)
    XCTAssertFalse(pic.hasPendingInterrupt)
    out(0x21, 0x00)
    XCTAssertEqual(pic.acknowledge(), 0x39)
  }

  func testLevelTriggeredViaELCR() {
    linuxInit()
    out(0x4D1, 0x02)  // IRQ9 level-triggered
    XCTAssertEqual(pic.slave.elcr, 0x02)
    pic.setLevel(irq: 9, high: true)
    XCTAssertEqual(pic.acknowledge(), 0x39)
    XCTAssertEqual(pic.slave.irr & 0x02, 0x02, "level request stays while the line is high")
    out(0xA0, 0x20)
    out(0x20, 0x20)
    XCTAssertTrue(pic.hasPendingInterrupt, "still high after EOI: delivered again")
    pic.setLevel(irq: 9, high: false)
    XCTAssertFalse(pic.hasPendingInterrupt)
  }

  func testAutoEOI() {
    linuxInit(autoEOI: true)
    pic.setLevel(irq: 5, high: true)
    XCTAssertEqual(pic.acknowledge(), 0x35)
    XCTAssertEqual(pic.master.isr, 0)
    pic.setLevel(irq: 6, high: true)
    XCTAssertTrue(pic.hasPendingInterrupt, "no in-service bit blocks lower priorities")
  }

  func testReadIRRAndISRThroughOCW3() {
    linuxInit()
    pic.setLevel(irq: 3, high: true)
    pic.setLevel(irq: 5, high: true)
    out(0x20, 0x0A)
    XCTAssertEqual(inb(0x20), 0x28)
    _ = pic.acknowledge()
    out(0x20, 0x0B)
    XCTAssertEqual(inb(0x20), 0x08)
    XCTAssertEqual(inb(0x20), 0x08, "selection persists")
    out(0x20, 0x0A)
    XCTAssertEqual(inb(0x20), 0x20)
  }

  func testPollCommand() {
    linuxInit()
    out(0x21, 0xFF)
    pic.setLevel(irq: 6, high: true)
    out(0x20, 0x0C)
    XCTAssertEqual(inb(0x20), 0x00, "masked requests are not polled")
    out(0x21, 0x00)
    out(0x20, 0x0C)
    XCTAssertEqual(inb(0x20), 0x86)
    XCTAssertEqual(pic.master.isr, 0x40, "poll acknowledges")
    XCTAssertEqual(inb(0x20), 0x00, "next read is IRR again")
  }

  func testSpuriousIRQ7WhenRequestVanishes() {
    linuxInit()
    XCTAssertEqual(pic.acknowledge(), 0x37)
    XCTAssertEqual(pic.master.isr, 0, "spurious IRQ7 sets no ISR bit")
    XCTAssertNil(pic.acknowledgeInterrupt())
  }

  func testRotateOnNonSpecificEOI() {
    linuxInit()
    pic.setLevel(irq: 0, high: true)
    XCTAssertEqual(pic.acknowledge(), 0x30)
    out(0x20, 0xA0)  // rotate on non-specific EOI: IRQ0 now lowest
    pic.setLevel(irq: 0, high: false)
    pic.setLevel(irq: 0, high: true)
    pic.setLevel(irq: 7, high: true)
    XCTAssertEqual(pic.acknowledge(), 0x37, "IRQ7 now beats IRQ0")
  }

  func testReinitClearsStaleRequests() {
    linuxInit()
    out(0x21, 0xFF)
    pic.setLevel(irq: 1, high: true)
    linuxInit()
    XCTAssertFalse(pic.hasPendingInterrupt, "ICW1 resets the edge latches")
  }
}
