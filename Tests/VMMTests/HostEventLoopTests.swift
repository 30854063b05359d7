import Devices
import Foundation
import XCTest

@testable import VMM

final class HostEventLoopTests: XCTestCase {
  private func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }

  func testTimerFiresAtTheArmedDeadlineAndReArmingReplacesIt() throws {
    let loop = try HostEventLoop()
    let fired = DispatchSemaphore(value: 0)
    let lock = NSLock()
    var firedAt: [UInt64] = []
    loop.setTimerHandler { [self] in
      lock.lock()
      firedAt.append(monotonicNow())
      lock.unlock()
      fired.signal()
    }
    loop.start()
    defer { loop.stop() }
    let t0 = monotonicNow()
    loop.armTimer(atMonotonicNanoseconds: t0 + 5_000_000_000)
    // Moving the deadline earlier replaces the first one.
    loop.armTimer(atMonotonicNanoseconds: t0 + 30_000_000)
    XCTAssertEqual(fired.wait(timeout: .now() + 3), .success)
    lock.lock()
    let first = firedAt.first ?? 0
    lock.unlock()
    XCTAssertGreaterThanOrEqual(first, t0 + 30_000_000)
    XCTAssertLessThan(first, t0 + 2_000_000_000)
    // Disarmed: nothing more fires.
    loop.armTimer(atMonotonicNanoseconds: monotonicNow() + 20_000_000)
    loop.armTimer(atMonotonicNanoseconds: 0)
    XCTAssertEqual(fired.wait(timeout: .now() + 0.1), .timedOut)
  }

  /// The UART moves its deadline later with every byte: that must not cost a
  /// timerfd_settime each time, nor call the handler before the deadline.
  func testMovingTheDeadlineLaterReprogramsOnlyAtTheEarlyExpiry() throws {
    let loop = try HostEventLoop()
    let fired = DispatchSemaphore(value: 0)
    let lock = NSLock()
    var firedAt: [UInt64] = []
    loop.setTimerHandler { [self] in
      lock.lock()
      firedAt.append(monotonicNow())
      lock.unlock()
      fired.signal()
    }
    loop.start()
    defer { loop.stop() }
    let t0 = monotonicNow()
    for i in 0..<100 {
      loop.armTimer(atMonotonicNanoseconds: t0 + 20_000_000 + UInt64(i) * 400_000)
    }
    XCTAssertEqual(loop.timerPrograms, 1, "later deadlines wait for the armed expiry")
    XCTAssertEqual(fired.wait(timeout: .now() + 3), .success)
    lock.lock()
    let first = firedAt.first ?? 0
    lock.unlock()
    XCTAssertGreaterThanOrEqual(
      first, t0 + 20_000_000 + 99 * 400_000, "not before the last deadline")
    XCTAssertEqual(loop.timerPrograms, 2, "one re-arm at the early expiry")
    XCTAssertEqual(fired.wait(timeout: .now() + 0.1), .timedOut, "one call for one deadline")
  }

  func testAnIdleLoopDoesNotWakeUp() throws {
    let loop = try HostEventLoop()
    loop.start()
    usleep(200_000)
    XCTAssertEqual(loop.wakeups, 0, "nothing armed: the loop thread must sleep")
    loop.stop()
    XCTAssertEqual(loop.wakeups, 1, "only the stop request")
  }

  func testRegisteredDescriptorsWakeTheirHandler() throws {
    let loop = try HostEventLoop()
    var fds: [Int32] = [0, 0]
    XCTAssertEqual(pipe(&fds), 0)
    defer {
      close(fds[0])
      close(fds[1])
    }
    let got = DispatchSemaphore(value: 0)
    try loop.add(fd: fds[0]) {
      var b: UInt8 = 0
      _ = read(fds[0], &b, 1)
      if b == 42 { got.signal() }
    }
    XCTAssertThrowsError(try loop.add(fd: fds[0]) {})
    loop.start()
    defer { loop.stop() }
    var b: UInt8 = 42
    XCTAssertEqual(write(fds[1], &b, 1), 1)
    XCTAssertEqual(got.wait(timeout: .now() + 3), .success)
    loop.remove(fd: fds[0])
    XCTAssertEqual(write(fds[1], &b, 1), 1)
    XCTAssertEqual(got.wait(timeout: .now() + 0.1), .timedOut)
  }

  func testDoorbellKeepsARingThatCameBeforeTheWait() throws {
    let bell = try Doorbell()
    bell.ring()
    XCTAssertTrue(bell.wait(timeoutNanoseconds: nil))
    let t0 = monotonicNow()
    XCTAssertFalse(bell.wait(timeoutNanoseconds: 20_000_000))
    XCTAssertGreaterThanOrEqual(monotonicNow() - t0, 20_000_000)
    DispatchQueue.global().asyncAfter(deadline: .now() + 0.02) { bell.ring() }
    XCTAssertTrue(bell.wait(timeoutNanoseconds: 5_000_000_000))
  }

  func testHostClockMapsGuestDeadlinesToMonotonicTime() {
    let before = monotonicNow()
    let clock = HostMonotonicClock()
    let after = monotonicNow()
    let at = clock.monotonicNanoseconds(atGuest: 1_000)
    XCTAssertGreaterThanOrEqual(at, before + 1_000)
    XCTAssertLessThanOrEqual(at, after + 1_000)
  }
}
