import XCTest

@testable import Devices

final class FirmwareConfigTests: XCTestCase {
  /// Selects `key` and reads `count` bytes the way kvm-unit-tests does.
  private func read(_ d: FirmwareConfig, key: UInt16, count: Int) -> [UInt8] {
    d.ioWrite(offset: 0, size: 2, value: UInt32(key))
    return (0..<count).map { _ in UInt8(d.ioRead(offset: FirmwareConfig.dataOffset, size: 1)) }
  }

  private func u64(_ bytes: [UInt8]) -> UInt64 {
    bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
  }

  func testSignatureAndID() {
    let d = FirmwareConfig(ramSize: 256 << 20, cpuCount: 1)
    XCTAssertEqual(read(d, key: 0x00, count: 4), Array("QEMU".utf8))
    XCTAssertEqual(u64(read(d, key: 0x01, count: 4)), 1)
  }

  func testCPUCountAndRAMSizeAreLittleEndian() {
    let d = FirmwareConfig(ramSize: 3 << 30, cpuCount: 4)
    XCTAssertEqual(u64(read(d, key: 0x05, count: 2)), 4)
    XCTAssertEqual(u64(read(d, key: 0x0F, count: 2)), 4)
    XCTAssertEqual(u64(read(d, key: 0x03, count: 8)), 3 << 30)
  }

  func testReselectingRestartsAndReadsPastTheEndAreZero() {
    let d = FirmwareConfig(ramSize: 1 << 20, cpuCount: 2)
    XCTAssertEqual(read(d, key: 0x05, count: 4), [2, 0, 0, 0])
    XCTAssertEqual(read(d, key: 0x05, count: 1), [2])
  }

  func testUnknownKeysAndByteWritesChangeNothing() {
    let d = FirmwareConfig(ramSize: 1 << 20, cpuCount: 1)
    // 0x11 is not max-RAM in QEMU; kvm-unit-tests reads 0 as "no limit".
    XCTAssertEqual(read(d, key: 0x11, count: 8), [UInt8](repeating: 0, count: 8))
    XCTAssertEqual(read(d, key: 0xFFFF, count: 2), [0, 0])
    d.ioWrite(offset: 0, size: 2, value: 0x00)
    d.ioWrite(offset: FirmwareConfig.dataOffset, size: 1, value: 0x55)
    d.ioWrite(offset: 0, size: 1, value: 0x05)  // a byte write does not select
    XCTAssertEqual((0..<4).map { _ in UInt8(d.ioRead(offset: 1, size: 1)) }, Array("QEMU".utf8))
  }

  func testRandomAccessNeverTraps() {
    var rng = SystemRandomNumberGenerator()
    let d = FirmwareConfig(ramSize: UInt64.max, cpuCount: Int.max)
    for _ in 0..<10_000 {
      let off = UInt16.random(in: 0...1, using: &rng)
      let size = [1, 2, 4].randomElement(using: &rng)!
      if Bool.random(using: &rng) {
        d.ioWrite(offset: off, size: size, value: UInt32.random(in: 0...UInt32.max, using: &rng))
      } else {
        _ = d.ioRead(offset: off, size: size)
      }
    }
  }
}
