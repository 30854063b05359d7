import Devices
import Memory
import XCTest

@testable import VMM

/// The UART's transmit deadline moves with every byte the guest writes: it must reach
/// a running guest (its last burst waits for THRE with no exit to come) through the
/// host timer, which HostEventLoop re-programs only for an earlier deadline.
final class PlatformDeadlineTests: XCTestCase {
  final class Lines: InterruptLines {
    var levels: [Int: Bool] = [:]
    func setLevel(irq: Int, high: Bool) { levels[irq] = high }
  }

  func testTheUARTsDeadlineReachesTheHostTimer() throws {
    let clock = ManualClock()
    let p = try PCPlatform(
      memory: try GuestMemory(size: 16 << 20), portBus: PortIOBus(), mmioBus: MMIOBus(),
      clock: clock, cpuCount: 1)
    var armed: [UInt64] = []
    p.onDeadlineChange = { armed.append($0) }
    let lines = Lines()
    let uart = UART16550(irq: IRQLine(4, lines: lines), clock: clock) { _ in }
    p.addTimedDevice(uart)
    uart.ioWrite(offset: 4, size: 1, value: 0x08)  // OUT2
    uart.ioWrite(offset: 1, size: 1, value: 0x02)  // THRE interrupt on
    _ = uart.ioRead(offset: 2, size: 1)  // acknowledge the first THRE
    for i in 0..<100 {
      clock.set(to: UInt64(i) * 1_000)
      uart.ioWrite(offset: 0, size: 1, value: 0x41)
      p.poll()
    }
    XCTAssertEqual(p.earliestDeadline, 99_000 + UART16550.transmitNanoseconds)
    XCTAssertEqual(armed.last, p.earliestDeadline, "the host timer is told the deadline")
    XCTAssertFalse(lines.levels[4] ?? false)
    clock.set(to: 99_000 + UART16550.transmitNanoseconds)
    p.poll()
    XCTAssertTrue(lines.levels[4] ?? false, "THRE after the last byte left")
    XCTAssertNil(uart.nextDeadline)
  }

  /// A guest that halts until THRE (Linux's writer, its FIFO full) must not wait for a
  /// host sleep of the transmit time per burst.
  func testAHaltedGuestGetsTHREWithoutWaiting() throws {
    let clock = ManualClock()
    let p = try PCPlatform(
      memory: try GuestMemory(size: 16 << 20), portBus: PortIOBus(), mmioBus: MMIOBus(),
      clock: clock, cpuCount: 1)
    let lines = Lines()
    let uart = UART16550(irq: IRQLine(4, lines: lines), clock: clock) { _ in }
    p.addTimedDevice(uart)
    uart.ioWrite(offset: 4, size: 1, value: 0x08)
    uart.ioWrite(offset: 1, size: 1, value: 0x02)
    _ = uart.ioRead(offset: 2, size: 1)
    uart.ioWrite(offset: 0, size: 1, value: 0x41)
    p.poll()
    XCTAssertFalse(lines.levels[4] ?? false)
    XCTAssertTrue(p.completeIdleDeadlines())
    XCTAssertTrue(lines.levels[4] ?? false, "THRE at once")
    XCTAssertEqual(clock.nanoseconds, 0, "guest time did not move")
    XCTAssertFalse(p.completeIdleDeadlines(), "nothing left")
  }
}
