import XCTest

@testable import Devices

/// Counts rising edges per IRQ and remembers levels.
final class EdgeRecorder: InterruptLines {
  var levels: [Int: Bool] = [:]
  var rising: [Int: Int] = [:]
  func setLevel(irq: Int, high: Bool) {
    if high && !(levels[irq] ?? false) { rising[irq, default: 0] += 1 }
    levels[irq] = high
  }
  func edges(_ irq: Int) -> Int { rising[irq] ?? 0 }
}

final class PIT8254Tests: XCTestCase {
  let clock = ManualClock()
  let lines = EdgeRecorder()
  lazy var pit = PIT8254(clock: clock, irq0: IRQLine(0, lines: lines))

  func out(_ port: UInt16, _ v: UInt8) {
    pit.ioWrite(offset: port == 0x61 ? 0x21 : port - 0x40, size: 1, value: UInt32(v))
  }
  func inb(_ port: UInt16) -> UInt8 {
    UInt8(truncatingIfNeeded: pit.ioRead(offset: port == 0x61 ? 0x21 : port - 0x40, size: 1))
  }
  /// Moves the clock to exactly `ticks` PIT input ticks after 0.
  func at(ticks: UInt64) { clock.set(to: PIT8254.rate.nanoseconds(for: ticks)) }

  func latched(_ ch: UInt8) -> UInt16 {
    out(0x43, ch << 6)
    let lo = inb(0x40 + UInt16(ch))
    let hi = inb(0x40 + UInt16(ch))
    return UInt16(lo) | UInt16(hi) << 8
  }

  func testRegistersPortsIncludingPort61() throws {
    let bus = PortIOBus()
    try pit.register(on: bus)
    bus.write(port: 0x61, size: 1, value: 0x03)
    XCTAssertEqual(bus.read(port: 0x61, size: 1) & 0x03, 0x03)
    XCTAssertTrue(pit.channel2Gate)
    bus.write(port: 0x43, size: 1, value: 0x34)
    bus.write(port: 0x40, size: 1, value: 0x10)
    bus.write(port: 0x40, size: 1, value: 0x00)
    XCTAssertNotNil(pit.nextDeadline)
  }

  func testNoDeadlineBeforeProgramming() {
    XCTAssertNil(pit.nextDeadline)
    pit.poll(now: 10_000_000_000)
    XCTAssertEqual(lines.edges(0), 0)
  }

  /// Linux's periodic setup at HZ=250: 0x34, LATCH = 4773.
  func testMode2PeriodicRaisesIRQ0EachPeriod() {
    out(0x43, 0x34)
    out(0x40, UInt8(4773 & 0xFF))
    out(0x40, UInt8(4773 >> 8))
    let first = PIT8254.rate.nanoseconds(for: 4773)
    XCTAssertEqual(pit.nextDeadline, first)
    XCTAssertEqual(first, 4_000_228, "4773 ticks, rounded up")
    pit.poll(now: first - 1)
    XCTAssertEqual(lines.edges(0), 0)
    pit.poll(now: first)
    XCTAssertEqual(lines.edges(0), 1)
    XCTAssertEqual(lines.levels[0], false, "a pulse, not a held level")
    XCTAssertEqual(pit.nextDeadline, PIT8254.rate.nanoseconds(for: 2 * 4773))
    pit.poll(now: PIT8254.rate.nanoseconds(for: 2 * 4773))
    XCTAssertEqual(lines.edges(0), 2)
  }

  func testLatePollCoalescesMissedPeriods() {
    out(0x43, 0x34)
    out(0x40, 0xE8)
    out(0x40, 0x03)  // 1000
    pit.poll(now: PIT8254.rate.nanoseconds(for: 10_500))
    XCTAssertEqual(lines.edges(0), 1)
    XCTAssertEqual(pit.nextDeadline, PIT8254.rate.nanoseconds(for: 11_000))
  }

  func testMode4OneShotFiresOnce() {
    out(0x43, 0x38)  // Linux's oneshot mode
    out(0x40, 100)
    out(0x40, 0)
    XCTAssertEqual(pit.nextDeadline, PIT8254.rate.nanoseconds(for: 101))
    pit.poll(now: PIT8254.rate.nanoseconds(for: 101))
    XCTAssertEqual(lines.edges(0), 1)
    XCTAssertNil(pit.nextDeadline)
  }

  func testMode0InterruptOnTerminalCountAndWrap() {
    out(0x43, 0x30)
    out(0x40, 0x00)
    out(0x40, 0x01)  // 256
    at(ticks: 100)
    XCTAssertEqual(latched(0), 156)
    XCTAssertEqual(pit.nextDeadline, PIT8254.rate.nanoseconds(for: 256))
    at(ticks: 300)
    pit.poll(now: clock.nanoseconds)
    XCTAssertEqual(lines.edges(0), 1)
    XCTAssertEqual(latched(0), UInt16(truncatingIfNeeded: 256 - 300), "counter wraps after TC")
    XCTAssertNil(pit.nextDeadline)
  }

  func testLatchFreezesValueUntilRead() {
    out(0x43, 0x34)
    out(0x40, 0x00)
    out(0x40, 0x00)  // 65536
    at(ticks: 1000)
    out(0x43, 0x00)
    at(ticks: 5000)
    let lo = inb(0x40)
    let hi = inb(0x40)
    XCTAssertEqual(UInt16(lo) | UInt16(hi) << 8, 64536)
    XCTAssertEqual(latched(0), 60536, "next latch is fresh")
  }

  func testUnlatchedReadsAlternateLSBAndMSB() {
    out(0x43, 0xB0)  // channel 2, lo/hi, mode 0
    out(0x42, 0x34)
    out(0x42, 0x12)
    out(0x61, 0x01)
    at(ticks: 0x10)
    XCTAssertEqual(inb(0x42), 0x24)
    XCTAssertEqual(inb(0x42), 0x12)
  }

  func testLSBOnlyAndMSBOnlyAccess() {
    out(0x43, 0x10)  // ch0 LSB only, mode 0
    out(0x40, 50)
    XCTAssertEqual(pit.nextDeadline, PIT8254.rate.nanoseconds(for: 50))
    out(0x43, 0x20)  // ch0 MSB only
    out(0x40, 0x02)
    XCTAssertEqual(pit.nextDeadline, PIT8254.rate.nanoseconds(for: 0x200))
    at(ticks: 0x100)
    XCTAssertEqual(inb(0x40), 0x01)
  }

  /// Linux's pit_calibrate_tsc: gate on through 0x61, channel 2 mode 0,
  /// then poll 0x61 bit 5 until the output goes high.
  func testChannel2CalibrationOutputOnPort61() {
    out(0x61, (inb(0x61) & ~0x02) | 0x01)
    out(0x43, 0xB0)
    let latch: UInt64 = 1_193_182 / 20  // 50 ms
    out(0x42, UInt8(latch & 0xFF))
    out(0x42, UInt8(latch >> 8))
    XCTAssertEqual(inb(0x61) & 0x20, 0)
    at(ticks: latch - 1)
    XCTAssertEqual(inb(0x61) & 0x20, 0)
    at(ticks: latch)
    XCTAssertEqual(inb(0x61) & 0x20, 0x20)
    XCTAssertEqual(lines.edges(0), 0, "channel 2 raises no IRQ")
  }

  func testChannel2GateLowSuspendsMode0() {
    out(0x43, 0xB0)
    out(0x42, 0x00)
    out(0x42, 0x01)  // 256, gate still low
    at(ticks: 1000)
    XCTAssertEqual(latched(2), 256, "not counting with gate low")
    out(0x61, 0x01)
    at(ticks: 1100)
    XCTAssertEqual(latched(2), 156)
    out(0x61, 0x00)
    at(ticks: 5000)
    XCTAssertEqual(latched(2), 156, "suspended")
    XCTAssertFalse(pit.channel2Output)
  }

  func testQuickCalibrationMSBSequence() {
    out(0x61, 0x01)
    out(0x43, 0xB0)
    out(0x42, 0xFF)
    out(0x42, 0xFF)
    at(ticks: 256 * 3 + 5)
    _ = inb(0x42)
    XCTAssertEqual(inb(0x42), 0xFF - 3)
  }

  func testMode3SquareWaveOnChannel2() {
    out(0x61, 0x01)
    out(0x43, 0xB6)  // ch2 lo/hi mode 3 (PC speaker)
    out(0x42, 100)
    out(0x42, 0)
    at(ticks: 10)
    XCTAssertTrue(pit.channel2Output)
    at(ticks: 60)
    XCTAssertFalse(pit.channel2Output)
    at(ticks: 110)
    XCTAssertTrue(pit.channel2Output)
    at(ticks: 10 + 100 * 7)
    XCTAssertEqual(latched(2), 80, "counts down by two")
  }

  func testMode1TriggeredByGate() {
    out(0x43, 0xB2)  // ch2 mode 1
    out(0x42, 10)
    out(0x42, 0)
    at(ticks: 100)
    XCTAssertTrue(pit.channel2Output, "waiting for trigger: OUT high")
    out(0x61, 0x01)
    XCTAssertFalse(pit.channel2Output)
    at(ticks: 110)
    XCTAssertTrue(pit.channel2Output)
  }

  func testReadBackStatusAndCount() {
    out(0x43, 0x34)
    out(0x40, 0x00)
    out(0x40, 0x10)  // 4096
    at(ticks: 96)
    out(0x43, 0xC2)  // read-back count and status of channel 0
    XCTAssertEqual(inb(0x40), 0xB4, "status: OUT high, lo/hi access, mode 2, binary")
    XCTAssertEqual(inb(0x40), 0xA0)
    XCTAssertEqual(inb(0x40), 0x0F, "4096 - 96 = 0x0FA0")
  }

  func testBCDCounting() {
    out(0x43, 0x31)  // ch0 lo/hi mode 0 BCD
    out(0x40, 0x00)
    out(0x40, 0x10)  // 1000 decimal
    XCTAssertEqual(pit.nextDeadline, PIT8254.rate.nanoseconds(for: 1000))
    at(ticks: 1)
    XCTAssertEqual(latched(0), 0x0999)
  }

  func testGuestValuesNeverTrap() {
    for v in 0...255 {
      out(0x43, UInt8(v))
      out(0x40, UInt8(v))
      out(0x41, 0)
      out(0x42, UInt8(255 - v))
      out(0x61, UInt8(v))
      clock.advance(by: 12345)
      _ = inb(0x40)
      _ = inb(0x42)
      _ = inb(0x61)
      pit.poll(now: clock.nanoseconds)
    }
  }
}
