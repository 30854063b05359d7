import XCTest

@testable import Devices

final class CMOSRTCTests: XCTestCase {
  let clock = ManualClock()
  let lines = EdgeRecorder()
  /// 2026-11-24 23:59:58 UTC, a Tuesday.
  let start: Int64 = 1_795_564_798
  lazy var rtc = CMOSRTC(
    clock: clock, irq: IRQLine(8, lines: lines), startTime: start,
    memoryBelow4G: 512 << 20)

  override func setUp() {
    _ = rtc  // created at guest time 0
  }

  func read(_ r: UInt8) -> UInt8 {
    rtc.ioWrite(offset: 0, size: 1, value: UInt32(r))
    return UInt8(truncatingIfNeeded: rtc.ioRead(offset: 1, size: 1))
  }
  func write(_ r: UInt8, _ v: UInt8) {
    rtc.ioWrite(offset: 0, size: 1, value: UInt32(r))
    rtc.ioWrite(offset: 1, size: 1, value: UInt32(v))
  }
  func dateRegs() -> [UInt8] { [0x32, 0x09, 0x08, 0x07, 0x06, 0x04, 0x02, 0x00].map(read) }

  func testRegistersAtPorts0x70And0x71() throws {
    let bus = PortIOBus()
    try rtc.register(on: bus)
    bus.write(port: 0x70, size: 1, value: 0x8D)  // NMI-mask bit set: ignored
    XCTAssertEqual(bus.read(port: 0x71, size: 1), 0x80, "register D: valid RAM and time")
  }

  func testRealDateInBCD() {
    XCTAssertEqual(dateRegs(), [0x20, 0x26, 0x11, 0x24, 0x03, 0x23, 0x59, 0x58])
    XCTAssertEqual(read(0x0A), 0x26)
    XCTAssertEqual(read(0x0B), 0x02, "24-hour BCD")
  }

  func testTimeAdvancesWithGuestClockAcrossMidnight() {
    clock.advance(by: 2_000_000_000)
    XCTAssertEqual(dateRegs(), [0x20, 0x26, 0x11, 0x25, 0x04, 0x00, 0x00, 0x00])
  }

  func testBinaryAnd12HourModes() {
    let pm = CMOSRTC(clock: clock, irq: nil, startTime: 951_829_509)  // 2000-02-29 13:05:09
    func r(_ i: UInt8) -> UInt8 {
      pm.ioWrite(offset: 0, size: 1, value: UInt32(i))
      return UInt8(pm.ioRead(offset: 1, size: 1))
    }
    func w(_ i: UInt8, _ v: UInt8) {
      pm.ioWrite(offset: 0, size: 1, value: UInt32(i))
      pm.ioWrite(offset: 1, size: 1, value: UInt32(v))
    }
    XCTAssertEqual(r(0x07), 0x29)
    XCTAssertEqual(r(0x06), 3, "Tuesday")
    w(0x0B, 0x06)  // binary, 24h
    XCTAssertEqual([r(0x09), r(0x08), r(0x07), r(0x04), r(0x02), r(0x00)], [0, 2, 29, 13, 5, 9])
    w(0x0B, 0x00)  // BCD, 12h
    XCTAssertEqual(r(0x04), 0x81, "1 PM")
    w(0x0B, 0x04)  // binary, 12h
    XCTAssertEqual(r(0x04), 0x81)
  }

  /// Linux's mc146818_set_time: SET, write registers, clear SET.
  func testGuestSetsTimeWithSETBit() {
    write(0x0B, read(0x0B) | 0x80)
    clock.advance(by: 5_000_000_000)
    XCTAssertEqual(read(0x00), 0x58, "frozen while SET")
    write(0x00, 0x30)
    write(0x02, 0x15)
    write(0x04, 0x10)
    write(0x07, 0x01)
    write(0x08, 0x03)
    write(0x09, 0x24)
    write(0x32, 0x20)
    write(0x0B, read(0x0B) & ~0x80)
    clock.advance(by: 1_500_000_000)
    XCTAssertEqual(dateRegs(), [0x20, 0x24, 0x03, 0x01, 0x06, 0x10, 0x15, 0x31])
  }

  func testUIPJustBeforeEachUpdate() {
    clock.set(to: 500_000_000)
    XCTAssertEqual(read(0x0A) & 0x80, 0)
    clock.set(to: 999_900_000)
    XCTAssertEqual(read(0x0A) & 0x80, 0x80)
    clock.set(to: 1_000_000_000)
    XCTAssertEqual(read(0x0A) & 0x80, 0)
    write(0x0A, 0xA6)
    XCTAssertEqual(read(0x0A), 0x26, "UIP is read-only")
  }

  func testPeriodicInterrupt() {
    XCTAssertNil(rtc.nextDeadline)
    write(0x0B, 0x42)  // PIE, 24h
    let d = rtc.nextDeadline
    XCTAssertEqual(d, 976_563, "1024 Hz")
    rtc.poll(now: 976_562)
    XCTAssertEqual(lines.edges(8), 0)
    clock.set(to: d ?? 0)
    rtc.poll(now: clock.nanoseconds)
    XCTAssertEqual(lines.levels[8], true)
    XCTAssertEqual(read(0x0C), 0xC0, "IRQF | PF")
    XCTAssertEqual(lines.levels[8], false, "reading C lowers IRQ8")
    XCTAssertEqual(read(0x0C), 0x00)
    clock.advance(by: 976_563)
    rtc.poll(now: clock.nanoseconds)
    XCTAssertEqual(lines.edges(8), 2)
  }

  func testPeriodicFlagWithoutInterruptEnable() {
    clock.advance(by: 10_000_000)
    XCTAssertEqual(read(0x0C), 0x40, "PF set without PIE, no IRQF")
    XCTAssertEqual(lines.edges(8), 0)
    clock.advance(by: 1_000_000_000)
    XCTAssertEqual(read(0x0C), 0x50, "PF and UF at 23:59:59")
    clock.advance(by: 1_000_000_000)
    XCTAssertEqual(read(0x0C), 0x70, "00:00:00 also matches the all-zero alarm")
  }

  func testUpdateEndedInterrupt() {
    write(0x0A, 0x20)  // periodic off
    write(0x0B, 0x12)  // UIE
    XCTAssertEqual(rtc.nextDeadline, 1_000_000_000)
    clock.set(to: 1_000_000_000)
    rtc.poll(now: clock.nanoseconds)
    XCTAssertEqual(read(0x0C), 0x90)
    XCTAssertEqual(lines.edges(8), 1)
  }

  func testAlarmInterruptAtMatchOnly() {
    write(0x0A, 0x20)
    write(0x01, 0x01)  // alarm 00:00:01 (next day)
    write(0x03, 0x00)
    write(0x05, 0x00)
    write(0x0B, 0x22)  // AIE
    var fired: [Int] = []
    for s in 1...5 {
      clock.set(to: UInt64(s) * 1_000_000_000)
      rtc.poll(now: clock.nanoseconds)
      if read(0x0C) & 0xA0 == 0xA0 { fired.append(s) }
    }
    XCTAssertEqual(fired, [3], "23:59:58 + 3 s = 00:00:01")
  }

  func testAlarmDontCareMatchesEverySecond() {
    write(0x0A, 0x20)
    write(0x01, 0xC0)
    write(0x03, 0xFF)
    write(0x05, 0xC0)
    write(0x0B, 0x22)
    clock.set(to: 1_000_000_000)
    rtc.poll(now: clock.nanoseconds)
    XCTAssertEqual(read(0x0C) & 0xA0, 0xA0)
  }

  func testMemorySizeAsQEMUReports() {
    XCTAssertEqual([read(0x15), read(0x16)], [0x80, 0x02], "640 KiB base")
    XCTAssertEqual([read(0x17), read(0x18)], [0xFF, 0xFF], "extended KiB capped")
    XCTAssertEqual([read(0x30), read(0x31)], [0xFF, 0xFF])
    XCTAssertEqual([read(0x34), read(0x35)], [0x00, 0x1F], "(512 MiB - 16 MiB) / 64 KiB")
    let big = CMOSRTC(clock: clock, irq: nil, memoryBelow4G: 3 << 30, memoryAbove4G: 3 << 30)
    func r(_ i: UInt8) -> UInt8 {
      big.ioWrite(offset: 0, size: 1, value: UInt32(i))
      return UInt8(big.ioRead(offset: 1, size: 1))
    }
    XCTAssertEqual([r(0x5B), r(0x5C), r(0x5D)], [0x00, 0xC0, 0x00])
    XCTAssertEqual([r(0x34), r(0x35)], [0x00, 0xBF])
  }

  func testNVRAMStoresAndStatusRegistersAreReadOnly() {
    write(0x40, 0xAB)
    write(0x7F, 0x12)
    XCTAssertEqual(read(0x40), 0xAB)
    XCTAssertEqual(read(0x7F), 0x12)
    write(0x0D, 0x00)
    XCTAssertEqual(read(0x0D), 0x80)
    write(0xFF, 0x34)  // index bit 7 is the NMI mask: lands on 0x7F
    XCTAssertEqual(read(0x7F), 0x34)
  }

  func testCivilTimeRoundTrips() {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<2000 {
      let t = Int64.random(in: 0..<4_102_444_800, using: &rng)  // 1970..2100
      XCTAssertEqual(CivilTime(epochSeconds: t).epochSeconds, t)
    }
    let leap = CivilTime(epochSeconds: 951_782_400)
    XCTAssertEqual([leap.year, leap.month, leap.day, leap.weekday], [2000, 2, 29, 3])
  }

  func testGarbageRegistersNeverTrap() {
    write(0x0B, 0x80)
    for r in [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32] as [UInt8] { write(r, 0xFF) }
    write(0x0B, 0x00)
    _ = dateRegs()
    for v in 0...255 {
      write(0x0A, UInt8(v))
      write(0x0B, UInt8(v) & 0x7F)
      _ = rtc.nextDeadline
      rtc.poll(now: clock.nanoseconds)
      clock.advance(by: 1_000_003)
    }
  }
}
