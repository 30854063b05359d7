import XCTest

@testable import Devices

final class QEMUTestDeviceTests: XCTestCase {
  final class Lines: InterruptLines {
    var changes: [(Int, Bool)] = []
    func setLevel(irq: Int, high: Bool) { changes.append((irq, high)) }
  }

  func testScratchRegisterKeepsBytesByOffset() {
    let d = QEMUTestDevice(interruptLines: nil, irqCount: 24)
    d.ioWrite(offset: 0, size: 4, value: 0x1122_3344)
    XCTAssertEqual(d.ioRead(offset: 0, size: 4), 0x1122_3344)
    d.ioWrite(offset: 2, size: 1, value: 0xAB)
    XCTAssertEqual(d.ioRead(offset: 0, size: 4), 0x11AB_3344)
    XCTAssertEqual(d.ioRead(offset: 1, size: 2), 0xAB33)
    // A word at offset 3 keeps only the byte inside the register.
    d.ioWrite(offset: 3, size: 2, value: 0xFFEE)
    XCTAssertEqual(d.ioRead(offset: 0, size: 4), 0xEEAB_3344)
    d.ioWrite(offset: QEMUTestDevice.flushOffset, size: 4, value: 0x1000)  // no effect
    XCTAssertEqual(d.ioRead(offset: 0, size: 4), 0xEEAB_3344)
  }

  func testIRQPortsDriveTheirLine() {
    let lines = Lines()
    let d = QEMUTestDevice(interruptLines: lines, irqCount: 24)
    d.ioWrite(offset: QEMUTestDevice.irqOffset + 0x0E, size: 1, value: 1)
    d.ioWrite(offset: QEMUTestDevice.irqOffset + 0x0E, size: 1, value: 1)  // no change
    d.ioWrite(offset: QEMUTestDevice.irqOffset + 0x0E, size: 1, value: 0)
    d.ioWrite(offset: QEMUTestDevice.irqOffset + 24, size: 1, value: 1)  // past the last line
    XCTAssertEqual(lines.changes.map { $0.0 }, [0x0E, 0x0E])
    XCTAssertEqual(lines.changes.map { $0.1 }, [true, false])
  }

  func testMemoryIsRAMLikeAndBounded() {
    let d = QEMUTestDevice(interruptLines: nil, irqCount: 0)
    d.mmioWrite(offset: 0x10, size: 8, value: 0x0102_0304_0506_0708)
    XCTAssertEqual(d.mmioRead(offset: 0x10, size: 8), 0x0102_0304_0506_0708)
    XCTAssertEqual(d.mmioRead(offset: 0x12, size: 2), 0x0506)
    let last = UInt64(QEMUTestDevice.memorySize - 2)
    d.mmioWrite(offset: last, size: 4, value: 0xAABB_CCDD)  // half past the end
    XCTAssertEqual(d.mmioRead(offset: last, size: 4), 0xCCDD)
    XCTAssertEqual(d.mmioRead(offset: 1 << 40, size: 8), 0)
  }

  func testRandomAccessNeverTraps() {
    var rng = SystemRandomNumberGenerator()
    let d = QEMUTestDevice(interruptLines: Lines(), irqCount: 24)
    for _ in 0..<10_000 {
      let size = [1, 2, 4, 8].randomElement(using: &rng)!
      let port = UInt16.random(in: 0...0x120, using: &rng)
      let addr = UInt64.random(in: 0...0x10010, using: &rng)
      switch Int.random(in: 0..<4, using: &rng) {
      case 0: d.ioWrite(offset: port, size: min(size, 4), value: .random(in: 0...UInt32.max))
      case 1: _ = d.ioRead(offset: port, size: min(size, 4))
      case 2: d.mmioWrite(offset: addr, size: size, value: .random(in: 0...UInt64.max))
      default: _ = d.mmioRead(offset: addr, size: size)
      }
    }
  }
}
