import XCTest

@testable import Devices

/// IA32_APIC_BASE moves one CPU's APIC page (kvm-unit-tests' apic "relocate apic").
final class APICRelocationTests: XCTestCase {
  let clock = ManualClock()
  lazy var apics = (0..<2).map {
    LocalAPIC(clock: clock, tscFrequency: 1_000_000_000, id: UInt8($0), isBSP: $0 == 0)
  }
  lazy var apicBus = APICBus(apics: apics)
  let mmio = MMIOBus()
  let moved: UInt64 = 0xFED4_0000

  func read(_ address: UInt64, cpu: Int) -> UInt64 {
    apicBus.current = cpu
    return mmio.read(address: address, size: 4)
  }

  func testRelocatedAPICAnswersAtItsNewBaseOnly() throws {
    try apicBus.register(on: mmio)
    XCTAssertEqual(read(moved + 0x30, cpu: 0), 0xFFFF_FFFF, "nothing there yet")
    XCTAssertTrue(apics[0].writeAPICBase(0xFEE0_0100))  // disable, then move (as the test does)
    XCTAssertTrue(apics[0].writeAPICBase(moved | 0x900))
    XCTAssertEqual(read(moved + 0x30, cpu: 0), 0x0005_0014, "CPU 0's APIC at its new base")
    XCTAssertEqual(read(moved + 0x20, cpu: 0), 0)
    XCTAssertEqual(read(0xFEE0_0030, cpu: 0), 0xFFFF_FFFF, "gone from the old base for CPU 0")
    XCTAssertEqual(read(0xFEE0_0020, cpu: 1), 1 << 24, "CPU 1's APIC has not moved")
    XCTAssertEqual(read(moved + 0x30, cpu: 1), 0xFFFF_FFFF)
    apicBus.current = 0
    mmio.write(address: moved + 0x80, size: 4, value: 0x30)
    XCTAssertEqual(apics[0].taskPriorityClass, 3, "writes reach it too")
    XCTAssertTrue(apics[0].writeAPICBase(0xFEE0_0900))
    XCTAssertEqual(read(0xFEE0_0030, cpu: 0), 0x0005_0014, "back home")
    XCTAssertEqual(read(moved + 0x30, cpu: 0), 0xFFFF_FFFF, "the window is gone")
  }

  func testABaseOnAnotherDeviceStaysUnmapped() throws {
    try apicBus.register(on: mmio)
    final class Other: MMIODevice {
      func mmioRead(offset: UInt64, size: Int) -> UInt64 { 0x1234 }
      func mmioWrite(offset: UInt64, size: Int, value: UInt64) {}
    }
    try mmio.register(Other(), base: moved, size: 0x1000, name: "other")
    XCTAssertTrue(apics[0].writeAPICBase(moved | 0x900))
    XCTAssertEqual(read(moved + 0x30, cpu: 0), 0x1234, "the other device keeps its range")
  }
}
