import XCTest

@testable import Devices

/// IPI routing between the local APICs of an SMP machine.
final class APICBusTests: XCTestCase {
  let clock = ManualClock()
  lazy var apics = (0..<4).map {
    LocalAPIC(clock: clock, tscFrequency: 1_000_000_000, id: UInt8($0), isBSP: $0 == 0)
  }
  lazy var bus = APICBus(apics: apics)
  var signals: [(Int, StartupSignal)] = []

  override func setUp() {
    bus.onStartup = { [unowned self] in self.signals.append(($0, $1)) }
    for a in apics { a.mmioWrite(offset: 0xF0, size: 4, value: 0x1FF) }
  }

  /// Writes ICR high then low on CPU `from`, as a guest does.
  func send(from: Int, low: UInt32, dest: UInt8 = 0) {
    bus.current = from
    bus.mmioWrite(offset: 0x310, size: 4, value: UInt64(dest) << 24)
    bus.mmioWrite(offset: 0x300, size: 4, value: UInt64(low))
  }

  /// The vector each APIC takes now (acknowledged and ended), nil for none.
  func pending() -> [UInt8?] {
    apics.map { a in
      guard a.hasPendingInterrupt else { return nil }
      let v = a.acknowledge()
      a.mmioWrite(offset: 0xB0, size: 4, value: 0)  // EOI
      return v
    }
  }

  func testMMIOReachesTheCurrentCPUsAPIC() {
    for i in 0..<4 {
      bus.current = i
      XCTAssertEqual(bus.mmioRead(offset: 0x20, size: 4), UInt64(i) << 24)
    }
  }

  func testFixedPhysicalReachesOnlyItsDestination() {
    send(from: 0, low: 0x0041, dest: 2)
    XCTAssertEqual(pending(), [nil, nil, 0x41, nil])
    send(from: 3, low: 0x0042, dest: 0xFF)  // physical broadcast
    XCTAssertEqual(pending(), [0x42, 0x42, 0x42, 0x42])
  }

  func testShorthands() {
    send(from: 1, low: 0x4_0050)  // self
    XCTAssertEqual(pending(), [nil, 0x50, nil, nil])
    send(from: 1, low: 0x8_0051)  // all including self
    XCTAssertEqual(pending(), [0x51, 0x51, 0x51, 0x51])
    send(from: 1, low: 0xC_0052)  // all excluding self
    XCTAssertEqual(pending(), [0x52, nil, 0x52, 0x52])
  }

  func testLogicalFlatDestination() {
    for (i, a) in apics.enumerated() {
      bus.current = i
      bus.mmioWrite(offset: 0xD0, size: 4, value: UInt64(1 << i) << 24)  // LDR: one bit each
      _ = a
    }
    send(from: 0, low: 0x0860, dest: 0b1010)  // logical, CPUs 1 and 3
    XCTAssertEqual(pending(), [nil, 0x60, nil, 0x60])
  }

  func testLowestPriorityPicksOneAndPrefersLowTPR() {
    send(from: 0, low: 0xC_0170)  // lowest priority, all excluding self
    XCTAssertEqual(pending().compactMap { $0 }, [0x70], "exactly one CPU takes it")
    // CPUs 1 and 2 raise their TPR: CPU 3 has the lowest priority.
    for i in [1, 2] {
      bus.current = i
      bus.mmioWrite(offset: 0x80, size: 4, value: 0x40)
    }
    for _ in 0..<3 {
      send(from: 0, low: 0xC_0171)
      XCTAssertEqual(pending(), [nil, nil, nil, 0x71])
    }
  }

  func testNMIIsLatchedInEachTarget() {
    send(from: 0, low: 0xC_0400)  // NMI, all excluding self
    XCTAssertEqual(apics.map(\.nmiPending), [false, true, true, true])
  }

  func testInitAndStartupGoToTheVMM() {
    send(from: 0, low: 0xC500, dest: 2)  // INIT assert
    send(from: 0, low: 0x8500, dest: 2)  // INIT de-assert: ignored
    send(from: 0, low: 0x0608, dest: 2)  // SIPI, vector 8
    send(from: 0, low: 0xC_0609)  // SIPI to all others
    XCTAssertEqual(signals.map(\.0), [2, 2, 1, 2, 3])
    XCTAssertEqual(
      signals.map(\.1),
      [
        .initialize, .startup(vector: 8), .startup(vector: 9), .startup(vector: 9),
        .startup(vector: 9),
      ])
    XCTAssertEqual(apics[2].mmioRead(offset: 0xF0, size: 4), 0xFF, "INIT reset APIC 2")
    XCTAssertEqual(apics[1].mmioRead(offset: 0xF0, size: 4), 0x1FF)
  }

  func testIOAPICMessagesFollowTheirDestination() {
    bus.accept(
      IOAPICMessage(
        vector: 0x30, deliveryMode: 0, logicalDestination: false, levelTriggered: false,
        destination: 3))
    XCTAssertEqual(pending(), [nil, nil, nil, 0x30])
    bus.accept(
      IOAPICMessage(
        vector: 0x31, deliveryMode: 1, logicalDestination: false, levelTriggered: false,
        destination: 0xFF))
    XCTAssertEqual(pending().compactMap { $0 }, [0x31])
  }

  func testIllegalVectorIsRefusedAtTheSender() {
    send(from: 1, low: 0x0005, dest: 2)
    XCTAssertEqual(pending(), [nil, nil, nil, nil])
    bus.current = 1
    bus.mmioWrite(offset: 0x280, size: 4, value: 0)
    XCTAssertEqual(bus.mmioRead(offset: 0x280, size: 4), 1 << 5, "send illegal vector")
  }

  /// KVM_HC_SEND_IPI: a bitmap of APIC IDs from a base; the answer is how many it reached.
  func testParavirtualIPI() {
    XCTAssertEqual(bus.sendParavirtualIPI(low: 0b1010, high: 0, minID: 0, icr: 0x41), 2)
    XCTAssertEqual(pending(), [nil, 0x41, nil, 0x41])
    XCTAssertEqual(bus.sendParavirtualIPI(low: 1, high: 0, minID: 2, icr: 0x42), 1)
    XCTAssertEqual(pending(), [nil, nil, 0x42, nil])
    XCTAssertEqual(
      bus.sendParavirtualIPI(low: 0xFFFF_FFFF, high: 0, minID: 0xFFFF_FFFF, icr: 0), 0,
      "no APIC at those IDs (kvm-unit-tests apic's PV IPI call)")
    XCTAssertEqual(bus.sendParavirtualIPI(low: 1, high: 0, minID: 0, icr: 0x500), 0, "INIT: no")
  }
}
