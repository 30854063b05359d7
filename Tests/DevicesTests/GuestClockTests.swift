import XCTest

@testable import Devices

final class GuestClockTests: XCTestCase {
  func testManualClockNeverGoesBack() {
    let c = ManualClock(start: 100)
    XCTAssertEqual(c.nanoseconds, 100)
    c.advance(by: 50)
    XCTAssertEqual(c.nanoseconds, 150)
    c.set(to: 120)
    XCTAssertEqual(c.nanoseconds, 150, "earlier times are ignored")
    c.set(to: 1_000)
    XCTAssertEqual(c.nanoseconds, 1_000)
  }

  func testInstructionCountTimeIsExactOverSmallSteps() {
    // 2.5 ns per instruction = 2560 per 1024 instructions.
    let c = ManualClock(nanosecondsPer1024Instructions: 2560)
    for _ in 0..<1000 { c.advance(instructions: 3) }
    XCTAssertEqual(c.nanoseconds, 7_500, "remainders carry instead of being lost")
    let d = ManualClock(nanosecondsPer1024Instructions: 2560)
    d.advance(instructions: 3000)
    XCTAssertEqual(d.nanoseconds, c.nanoseconds)
  }

  func testInstructionCountDefaultIsOneNanosecondEach() {
    let c = ManualClock()
    c.advance(instructions: 12_345)
    XCTAssertEqual(c.nanoseconds, 12_345)
  }

  func testHostClockStartsNearZeroAndIsMonotonic() {
    let c = HostMonotonicClock()
    let a = c.nanoseconds
    XCTAssertLessThan(a, 1_000_000_000)
    var last = a
    for _ in 0..<1000 {
      let n = c.nanoseconds
      XCTAssertGreaterThanOrEqual(n, last)
      last = n
    }
    usleep(2000)
    XCTAssertGreaterThanOrEqual(c.nanoseconds - a, 2_000_000)
  }

  /// The vCPU thread and the timer thread read the clock at once: every reader
  /// still sees time go forward (run under TSan: no data race is reported).
  func testHostClockIsMonotonicAcrossThreads() {
    let c = HostMonotonicClock()
    let backwards = UnsafeMutablePointer<Int>.allocate(capacity: 4)
    defer { backwards.deallocate() }
    backwards.initialize(repeating: 0, count: 4)
    DispatchQueue.concurrentPerform(iterations: 4) { t in
      var last: UInt64 = 0
      for _ in 0..<200_000 {
        let n = c.nanoseconds
        if n < last { backwards[t] += 1 }
        last = n
      }
    }
    XCTAssertEqual((0..<4).map { backwards[$0] }, [0, 0, 0, 0])
  }

  func testTickRateConversions() {
    let pit = TickRate(hertz: 1_193_182)
    XCTAssertEqual(pit.ticks(in: 1_000_000_000), 1_193_182)
    XCTAssertEqual(pit.ticks(in: 838), 0)
    XCTAssertEqual(pit.ticks(in: 839), 1)
    XCTAssertEqual(pit.nanoseconds(for: 1), 839, "rounded up: the deadline has always passed")
    for t: UInt64 in [1, 7, 4773, 65536, 123_456_789] {
      XCTAssertEqual(pit.ticks(in: pit.nanoseconds(for: t)), t)
    }
    let tsc = TickRate(hertz: 3_000_000_000)
    XCTAssertEqual(tsc.ticks(in: UInt64(1) << 62), 13_835_058_055_282_163_712)
    XCTAssertEqual(tsc.nanoseconds(for: UInt64.max), 6_148_914_691_236_517_205)
    XCTAssertEqual(
      TickRate(hertz: 1).nanoseconds(for: UInt64.max), UInt64.max, "saturates instead of trapping")
    XCTAssertEqual(TickRate(hertz: 0).hertz, 1)
  }

  func testWallClockIsPlausible() {
    XCTAssertGreaterThan(hostWallClockSeconds(), 1_600_000_000)
  }
}

final class GuestTSCTests: XCTestCase {
  func testTSCFollowsClockAndWrites() {
    let clock = ManualClock()
    let tsc = GuestTSC(clock: clock, frequency: 2_500_000_000)
    XCTAssertEqual(tsc.read(), 0)
    clock.advance(by: 1_000)
    XCTAssertEqual(tsc.read(), 2_500)
    tsc.write(10)
    XCTAssertEqual(tsc.read(), 10)
    clock.advance(by: 2)
    XCTAssertEqual(tsc.read(), 15)
    XCTAssertEqual(tsc.nanoseconds(atTSC: 25), 1_006)
    XCTAssertEqual(tsc.nanoseconds(atTSC: 5), 0, "already passed")
  }

  func testTSCNeverRunsBackwardsWithHostClock() {
    let tsc = GuestTSC(clock: HostMonotonicClock(), frequency: 3_000_000_000)
    var last = tsc.read()
    for _ in 0..<10000 {
      let v = tsc.read()
      XCTAssertGreaterThanOrEqual(v, last)
      last = v
    }
  }
}
