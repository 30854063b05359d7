import XCTest

@testable import Devices

final class IOAPICTests: XCTestCase {
  let clock = ManualClock()
  lazy var lapic = LocalAPIC(clock: clock, tscFrequency: 1_000_000_000)
  lazy var apicBus = APICBus(apics: [lapic])
  lazy var ioapic: IOAPIC = {
    let io = IOAPIC()
    io.connect(to: apicBus)
    return io
  }()

  func reg(_ i: UInt8) -> UInt32 {
    ioapic.mmioWrite(offset: 0, size: 4, value: UInt64(i))
    return UInt32(truncatingIfNeeded: ioapic.mmioRead(offset: 0x10, size: 4))
  }
  func setReg(_ i: UInt8, _ v: UInt32) {
    ioapic.mmioWrite(offset: 0, size: 4, value: UInt64(i))
    ioapic.mmioWrite(offset: 0x10, size: 4, value: UInt64(v))
  }
  func route(pin: Int, low: UInt32, destination: UInt8 = 0) {
    setReg(UInt8(0x11 + pin * 2), UInt32(destination) << 24)
    setReg(UInt8(0x10 + pin * 2), low)
  }

  override func setUp() {
    lapic.mmioWrite(offset: 0xF0, size: 4, value: 0x1FF)
  }

  func testIdentityAndVersion() throws {
    XCTAssertEqual(reg(0x01), 0x0017_0020, "version 0x20, 24 entries")
    setReg(0x00, 0xFFFF_FFFF)
    XCTAssertEqual(reg(0x00), 0x0F00_0000)
    XCTAssertEqual(reg(0x10), 0x10000, "entries start masked")
    let bus = MMIOBus()
    try ioapic.register(on: bus)
    bus.write(address: 0xFEC0_0000, size: 4, value: 1)
    XCTAssertEqual(bus.read(address: 0xFEC0_0010, size: 4), 0x0017_0020)
  }

  func testEdgeRedirectionToLAPIC() {
    route(pin: 4, low: 0x34)
    ioapic.setLevel(irq: 4, high: true)
    XCTAssertEqual(lapic.acknowledge(), 0x34)
    XCTAssertFalse(lapic.tmr[0x34])
    ioapic.setLevel(irq: 4, high: true)
    XCTAssertFalse(lapic.hasPendingInterrupt, "no new edge while held high")
    ioapic.setLevel(irq: 4, high: false)
    ioapic.setLevel(irq: 4, high: true)
    XCTAssertTrue(lapic.irr[0x34])
  }

  /// An edge on a masked pin is lost (82093AA, QEMU); the next edge is delivered.
  func testMaskedEdgeIsLost() {
    route(pin: 1, low: 0x10031)
    ioapic.setLevel(irq: 1, high: true)
    ioapic.setLevel(irq: 1, high: false)
    XCTAssertTrue(lapic.irr.isEmpty)
    route(pin: 1, low: 0x31)
    XCTAssertTrue(lapic.irr.isEmpty, "not delivered on unmask")
    ioapic.setLevel(irq: 1, high: true)
    XCTAssertEqual(lapic.acknowledge(), 0x31)
    XCTAssertFalse(lapic.hasPendingInterrupt)
  }

  func testLevelTriggeredRemoteIRRAndEOI() {
    route(pin: 10, low: 0x8000 | 0x4A)
    ioapic.setLevel(irq: 10, high: true)
    XCTAssertEqual(reg(0x10 + 20) & 0x4000, 0x4000, "remote IRR set on delivery")
    XCTAssertEqual(lapic.acknowledge(), 0x4A)
    XCTAssertTrue(lapic.isr[0x4A])
    // Still asserted: LAPIC EOI broadcasts, the IOAPIC re-delivers.
    lapic.mmioWrite(offset: 0xB0, size: 4, value: 0)
    XCTAssertTrue(lapic.irr[0x4A])
    XCTAssertEqual(reg(0x10 + 20) & 0x4000, 0x4000)
    XCTAssertEqual(lapic.acknowledge(), 0x4A)
    ioapic.setLevel(irq: 10, high: false)
    lapic.mmioWrite(offset: 0xB0, size: 4, value: 0)
    XCTAssertEqual(reg(0x10 + 20) & 0x4000, 0, "remote IRR cleared by EOI")
    XCTAssertTrue(lapic.irr.isEmpty, "deasserted: nothing more")
  }

  func testRemoteIRRIsReadOnlyAndEOIRegister() {
    route(pin: 9, low: 0x8000 | 0x49)
    ioapic.setLevel(irq: 9, high: true)
    route(pin: 9, low: 0x8000 | 0x49)  // guest rewrite keeps remote IRR
    XCTAssertEqual(reg(0x10 + 18) & 0x4000, 0x4000)
    ioapic.setLevel(irq: 9, high: false)
    ioapic.mmioWrite(offset: 0x40, size: 4, value: 0x49)
    XCTAssertEqual(reg(0x10 + 18) & 0x4000, 0)
  }

  func testLevelMaskedThenUnmaskedWhileAsserted() {
    route(pin: 11, low: 0x1_804B)
    ioapic.setLevel(irq: 11, high: true)
    XCTAssertTrue(lapic.irr.isEmpty)
    route(pin: 11, low: 0x804B)
    XCTAssertTrue(lapic.irr[0x4B])
    XCTAssertTrue(lapic.tmr[0x4B])
  }

  func testDestinationFiltering() {
    route(pin: 5, low: 0x35, destination: 7)
    ioapic.setLevel(irq: 5, high: true)
    XCTAssertTrue(lapic.irr.isEmpty, "physical destination 7 is not APIC 0")
    lapic.mmioWrite(offset: 0xD0, size: 4, value: 0x0100_0000)
    route(pin: 6, low: 0x800 | 0x36, destination: 0x01)  // logical flat, CPU 0
    ioapic.setLevel(irq: 6, high: true)
    XCTAssertTrue(lapic.irr[0x36])
  }

  func testRouterSendsISAIRQsToBothControllers() {
    let pic = PIC8259Pair()
    let router = ISAInterruptRouter(pic: pic, ioapic: ioapic)
    for (p, v) in [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00)] {
      pic.ioWrite(offset: UInt16(p), size: 1, value: UInt32(v))
    }
    route(pin: 2, low: 0x30)
    let irq0 = IRQLine(0, lines: router)
    irq0.set(true)
    irq0.set(false)
    XCTAssertEqual(pic.master.irr & 1, 1, "PIC sees IRQ0")
    XCTAssertTrue(lapic.irr[0x30], "IOAPIC pin 2 sees IRQ0")
    router.setLevel(irq: 20, high: true)  // PCI GSI: IOAPIC only, masked here
    XCTAssertEqual(ISAInterruptRouter.ioapicPin(forIRQ: 0), 2)
    XCTAssertEqual(ISAInterruptRouter.ioapicPin(forIRQ: 4), 4)
  }

  func testPlatformInputVirtualWireThenAPIC() {
    let pic = PIC8259Pair()
    let input = PlatformInterrupts(lapic: lapic, pic: pic)
    for (p, v) in [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE)] {
      pic.ioWrite(offset: UInt16(p), size: 1, value: UInt32(v))
    }
    pic.setLevel(irq: 0, high: true)
    XCTAssertTrue(input.hasPendingInterrupt, "LINT0 ExtINT passes the PIC through")
    XCTAssertEqual(input.acknowledgeInterrupt(), 0x30)
    pic.ioWrite(offset: 0x20, size: 1, value: 0x20)
    // Linux switches to the IOAPIC: masks LINT0 and the PIC.
    lapic.mmioWrite(offset: 0x350, size: 4, value: 0x10700)
    pic.setLevel(irq: 0, high: false)
    pic.setLevel(irq: 0, high: true)
    XCTAssertFalse(input.hasPendingInterrupt, "masked LINT0 blocks the PIC")
    XCTAssertNil(input.acknowledgeInterrupt())
    lapic.deliver(vector: 0xEC, levelTriggered: false)
    XCTAssertEqual(input.acknowledgeInterrupt(), 0xEC)
  }

  func testLAPICBeforePIC() {
    let pic = PIC8259Pair()
    let input = PlatformInterrupts(lapic: lapic, pic: pic)
    for (p, v) in [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00)] {
      pic.ioWrite(offset: UInt16(p), size: 1, value: UInt32(v))
    }
    pic.setLevel(irq: 3, high: true)
    lapic.deliver(vector: 0x80, levelTriggered: false)
    XCTAssertEqual(input.acknowledgeInterrupt(), 0x80)
    XCTAssertEqual(input.acknowledgeInterrupt(), 0x33)
  }

  /// PIT channel 0 through the router and IOAPIC pin 2 to the LAPIC.
  func testPITTimerThroughIOAPIC() {
    let pic = PIC8259Pair()
    let router = ISAInterruptRouter(pic: pic, ioapic: ioapic)
    let pit = PIT8254(clock: clock, irq0: IRQLine(0, lines: router))
    route(pin: 2, low: 0x30)
    pit.ioWrite(offset: 3, size: 1, value: 0x34)
    pit.ioWrite(offset: 0, size: 1, value: 0x9B)
    pit.ioWrite(offset: 0, size: 1, value: 0x2E)
    let input = PlatformInterrupts(lapic: lapic, pic: pic)
    lapic.mmioWrite(offset: 0x350, size: 4, value: 0x10700)
    var vectors: [UInt8] = []
    for _ in 0..<3 {
      guard let d = pit.nextDeadline else { return XCTFail("PIT not armed") }
      clock.set(to: d)
      pit.poll(now: d)
      if let v = input.acknowledgeInterrupt() { vectors.append(v) }
      lapic.mmioWrite(offset: 0xB0, size: 4, value: 0)
    }
    XCTAssertEqual(vectors, [0x30, 0x30, 0x30])
  }

  func testGuestValuesNeverTrap() {
    var g = SystemRandomNumberGenerator()
    for _ in 0..<20000 {
      ioapic.mmioWrite(offset: UInt64.random(in: 0..<0x50, using: &g), size: 4, value: g.next())
      _ = ioapic.mmioRead(offset: UInt64.random(in: 0..<0x50, using: &g), size: 4)
      ioapic.setLevel(irq: Int.random(in: -2..<30, using: &g), high: Bool.random(using: &g))
      _ = lapic.acknowledge()
      lapic.mmioWrite(offset: 0xB0, size: 4, value: 0)
    }
  }
}
