import XCTest

@testable import Devices

final class LocalAPICTests: XCTestCase {
  let clock = ManualClock()
  lazy var apic = LocalAPIC(clock: clock, tscFrequency: 2_000_000_000)
  /// The wires an IPI leaves on (this APIC alone).
  lazy var apicBus = APICBus(apics: [apic])

  func r(_ off: UInt64) -> UInt32 {
    UInt32(truncatingIfNeeded: apic.mmioRead(offset: off, size: 4))
  }
  func w(_ off: UInt64, _ v: UInt32) { apic.mmioWrite(offset: off, size: 4, value: UInt64(v)) }
  func enable() {
    _ = apicBus
    w(0xF0, 0x1FF)
  }

  func testResetStateLikeQEMU() throws {
    XCTAssertEqual(r(0x30), 0x0005_0014)
    XCTAssertEqual(r(0x20), 0)
    XCTAssertEqual(r(0xF0), 0xFF, "software-disabled, spurious vector 0xFF")
    XCTAssertEqual(r(0xE0), 0xFFFF_FFFF)
    XCTAssertEqual(r(0x320), 0x10000)
    XCTAssertEqual(r(0x350), 0x700, "BSP LINT0 in ExtINT: virtual wire")
    XCTAssertEqual(r(0x360), 0x10000)
    XCTAssertEqual(apic.apicBase, 0xFEE0_0900)
    XCTAssertTrue(apic.acceptsPICInterrupts)
    let bus = MMIOBus()
    try apic.register(on: bus)
    XCTAssertEqual(bus.read(address: 0xFEE0_0030, size: 4), 0x0005_0014)
  }

  func testNarrowReadTakesSlice() {
    XCTAssertEqual(apic.mmioRead(offset: 0x32, size: 1), 0x05)
  }

  func testDeliveryNeedsSoftwareEnable() {
    apic.deliver(vector: 0x40, levelTriggered: false)
    XCTAssertFalse(apic.hasPendingInterrupt)
    enable()
    XCTAssertTrue(apic.hasPendingInterrupt)
    XCTAssertEqual(apic.acknowledge(), 0x40)
  }

  func testPriorityTPRAndEOI() {
    enable()
    apic.deliver(vector: 0x31, levelTriggered: false)
    apic.deliver(vector: 0x52, levelTriggered: false)
    XCTAssertEqual(r(0x220), 1 << 18, "IRR bit 0x52 in the third word")
    XCTAssertEqual(r(0x200 + 0x10), 1 << 17, "IRR bit 0x31 in the second word")
    XCTAssertEqual(apic.acknowledge(), 0x52)
    XCTAssertEqual(r(0xA0), 0x50, "PPR follows ISR class")
    XCTAssertFalse(apic.hasPendingInterrupt, "0x31 is below the class in service")
    apic.deliver(vector: 0x61, levelTriggered: false)
    XCTAssertEqual(apic.acknowledge(), 0x61, "a higher class nests")
    w(0xB0, 0)
    XCTAssertEqual(apic.isr.highest, 0x52, "EOI ends the highest in service")
    w(0xB0, 0)
    XCTAssertEqual(apic.isr.highest, nil)
    w(0x80, 0x30)
    XCTAssertFalse(apic.hasPendingInterrupt, "TPR class 3 blocks vector 0x31")
    XCTAssertEqual(r(0xA0), 0x30)
    w(0x80, 0x20)
    XCTAssertEqual(apic.acknowledge(), 0x31)
  }

  func testSameClassDoesNotPreempt() {
    enable()
    apic.deliver(vector: 0x40, levelTriggered: false)
    XCTAssertEqual(apic.acknowledge(), 0x40)
    apic.deliver(vector: 0x4F, levelTriggered: false)
    XCTAssertFalse(apic.hasPendingInterrupt)
  }

  func testLevelTriggeredEOIBroadcast() {
    enable()
    var eois: [UInt8] = []
    apic.onLevelTriggeredEOI = { eois.append($0) }
    apic.deliver(vector: 0x41, levelTriggered: true)
    XCTAssertEqual(r(0x180 + 0x20), 1 << 1, "TMR records the level trigger")
    XCTAssertEqual(apic.acknowledge(), 0x41)
    apic.deliver(vector: 0x50, levelTriggered: false)
    XCTAssertEqual(apic.acknowledge(), 0x50)
    w(0xB0, 0)
    XCTAssertEqual(eois, [], "edge vector: no broadcast")
    w(0xB0, 0)
    XCTAssertEqual(eois, [0x41])
    XCTAssertEqual(r(0x180 + 0x20), 1 << 1, "TMR stays set after EOI until the next acceptance")
    apic.deliver(vector: 0x41, levelTriggered: false)
    XCTAssertEqual(r(0x180 + 0x20), 0, "an edge acceptance clears it")
  }

  func testSpuriousVectorWhenNothingPending() {
    w(0xF0, 0x1EF)
    XCTAssertEqual(apic.acknowledge(), 0xEF)
  }

  func testOneShotTimer() {
    enable()
    w(0x3E0, 0x3)  // divide by 16
    w(0x320, 0xEC)  // one-shot, vector 0xEC
    w(0x380, 1000)
    XCTAssertEqual(apic.nextDeadline, 16_000)
    clock.set(to: 8_000)
    XCTAssertEqual(r(0x390), 500)
    apic.poll(now: 15_999)
    XCTAssertFalse(apic.hasPendingInterrupt)
    clock.set(to: 16_000)
    apic.poll(now: 16_000)
    XCTAssertEqual(apic.acknowledge(), 0xEC)
    XCTAssertEqual(r(0x390), 0)
    XCTAssertNil(apic.nextDeadline)
    XCTAssertEqual(r(0x380), 1000)
  }

  func testPeriodicTimerAndCoalescing() {
    enable()
    w(0x3E0, 0xB)  // divide by 1
    w(0x320, 0x20030)  // periodic, vector 0x30
    w(0x380, 100)
    clock.set(to: 130)
    XCTAssertEqual(r(0x390), 70)
    apic.poll(now: 100)
    XCTAssertEqual(apic.nextDeadline, 200)
    XCTAssertEqual(apic.acknowledge(), 0x30)
    w(0xB0, 0)
    apic.poll(now: 1050)
    XCTAssertEqual(apic.nextDeadline, 1100, "missed periods coalesce")
    XCTAssertEqual(apic.acknowledge(), 0x30)
    XCTAssertFalse(apic.hasPendingInterrupt)
    w(0x380, 0)
    XCTAssertNil(apic.nextDeadline, "initial count 0 stops the timer")
  }

  func testDivideConfigEncodings() {
    let expected: [UInt32: UInt64] = [
      0x0: 2, 0x1: 4, 0x2: 8, 0x3: 16, 0x8: 32, 0x9: 64, 0xA: 128, 0xB: 1,
    ]
    for (config, div) in expected {
      w(0x3E0, config)
      XCTAssertEqual(apic.divisor, div, "config \(config)")
    }
  }

  func testMaskedTimerCountsButDoesNotInterrupt() {
    enable()
    w(0x3E0, 0xB)
    w(0x320, 0x10040)
    w(0x380, 50)
    apic.poll(now: 50)
    XCTAssertTrue(apic.irr.isEmpty)
  }

  func testTSCDeadlineMode() {
    enable()
    apic.writeTSCDeadline(1234)
    XCTAssertEqual(apic.readTSCDeadline(), 0, "ignored outside TSC-deadline mode")
    w(0x320, 0x400EF)
    w(0x380, 10)
    XCTAssertNil(apic.nextDeadline, "initial count ignored in TSC-deadline mode")
    apic.writeTSCDeadline(2_000_000)  // 1 ms at 2 GHz
    XCTAssertEqual(apic.readTSCDeadline(), 2_000_000)
    XCTAssertEqual(apic.nextDeadline, 1_000_000)
    apic.poll(now: 999_999)
    XCTAssertFalse(apic.hasPendingInterrupt)
    apic.poll(now: 1_000_000)
    XCTAssertEqual(apic.acknowledge(), 0xEF)
    XCTAssertEqual(apic.readTSCDeadline(), 0, "disarmed once fired")
    XCTAssertNil(apic.nextDeadline)
    apic.writeTSCDeadline(4_000_000)
    apic.writeTSCDeadline(0)
    XCTAssertNil(apic.nextDeadline, "writing 0 disarms")
    apic.writeTSCDeadline(4_000_000)
    w(0x320, 0x000EF)  // back to one-shot
    XCTAssertNil(apic.nextDeadline, "mode switch disarms")
    XCTAssertEqual(apic.readTSCDeadline(), 0)
  }

  func testTSCDeadlineFollowsGuestWrittenTSC() {
    enable()
    clock.set(to: 1_000)
    apic.tsc.write(1_000_000)  // TSC now 1e6 at t = 1000 ns (2 GHz)
    XCTAssertEqual(apic.tsc.read(), 1_000_000)
    w(0x320, 0x400EF)
    apic.writeTSCDeadline(1_004_000)
    XCTAssertEqual(apic.nextDeadline, 3_000)
    apic.writeTSCDeadline(500)
    XCTAssertEqual(apic.nextDeadline, 0, "a deadline in the past fires at the next poll")
    apic.poll(now: clock.nanoseconds)
    XCTAssertEqual(apic.acknowledge(), 0xEF)
  }

  func testSoftwareDisableMasksLVTs() {
    enable()
    w(0x350, 0x700)
    w(0xF0, 0xFF)
    XCTAssertEqual(r(0x350) & 0x10000, 0x10000)
    w(0x350, 0x700)
    XCTAssertEqual(r(0x350), 0x10700, "mask stays while disabled")
    XCTAssertFalse(apic.acceptsPICInterrupts)
    XCTAssertTrue(apic.writeAPICBase(0xFEE0_0000))
    XCTAssertTrue(apic.acceptsPICInterrupts, "globally disabled: INTR goes straight to the CPU")
    XCTAssertFalse(apic.isGloballyEnabled)
  }

  /// kvm-unit-tests apic_disable: a globally disabled APIC's page reads as all
  /// ones and a fill of it does not reach TPR (CR8).
  func testGloballyDisabledAPICIsGoneFromTheBus() {
    enable()
    w(0x80, 0x20)
    XCTAssertTrue(apic.writeAPICBase(0xFEE0_0100))
    XCTAssertEqual(r(0x30), 0xFFFF_FFFF)
    w(0x80, 0xFF)
    XCTAssertEqual(apic.taskPriorityClass, 2, "the write went nowhere")
    XCTAssertTrue(apic.writeAPICBase(0xFEE0_0900))
    XCTAssertEqual(r(0x30), 0x0005_0014)
    XCTAssertEqual(r(0x80), 0x20)
  }

  func testAPICBaseRefusesX2APICAndReservedBits() {
    XCTAssertFalse(apic.writeAPICBase(0xFEE0_0D00), "x2APIC mode is not offered")
    XCTAssertFalse(apic.writeAPICBase(0xFEE0_0901), "reserved bit 0")
    XCTAssertEqual(apic.apicBase, 0xFEE0_0900, "a refused write changes nothing")
  }

  func testICRSelfIPIAndStartupToTheVMM() {
    enable()
    var signals: [(Int, StartupSignal)] = []
    apicBus.onStartup = { signals.append(($0, $1)) }
    w(0x310, 0)
    w(0x300, 0x4_4055)  // self shorthand, fixed, vector 0x55
    XCTAssertEqual(apic.acknowledge(), 0x55)
    w(0x310, 0)
    w(0x300, 0xC500)  // INIT, level assert, to APIC 0
    w(0x300, 0x8500)  // INIT level de-assert: no effect
    w(0x300, 0x0698)  // SIPI vector 0x98
    XCTAssertEqual(signals.map(\.0), [0, 0])
    XCTAssertEqual(signals.map(\.1), [.initialize, .startup(vector: 0x98)])
    XCTAssertEqual(r(0x300) & (1 << 12), 0, "delivery status idle")
    XCTAssertEqual(r(0xF0), 0xFF, "INIT reset the APIC: software-disabled again")
  }

  func testFixedIPIBroadcastIncludingSelf() {
    enable()
    w(0x300, 0x8_0066)
    XCTAssertEqual(apic.acknowledge(), 0x66)
  }

  func testESRLatchesIllegalVector() {
    enable()
    w(0x370, 0xFE)
    apic.deliver(vector: 3, levelTriggered: false)
    XCTAssertEqual(r(0x280), 0, "ESR shows errors only after a write")
    w(0x280, 0)
    XCTAssertEqual(r(0x280), 1 << 6)
    w(0x280, 0)
    XCTAssertEqual(r(0x280), 0)
    w(0x300, 0x4_0005)  // self IPI with illegal vector
    XCTAssertEqual(apic.acknowledge(), 0xFE, "error LVT delivers")
    w(0x280, 0)
    XCTAssertEqual(r(0x280), 1 << 5)
  }

  func testDestinationMatching() {
    w(0x20, 0x0300_0000)
    XCTAssertEqual(apic.apicID, 3)
    XCTAssertTrue(apic.matches(destination: 3, logical: false))
    XCTAssertFalse(apic.matches(destination: 0, logical: false))
    XCTAssertTrue(apic.matches(destination: 0xFF, logical: false))
    w(0xD0, 0x0100_0000)
    XCTAssertTrue(apic.matches(destination: 0x01, logical: true))
    XCTAssertFalse(apic.matches(destination: 0x02, logical: true))
    w(0xE0, 0x0FFF_FFFF)  // cluster model
    w(0xD0, 0x2100_0000)
    XCTAssertTrue(apic.matches(destination: 0x23, logical: true))
    XCTAssertFalse(apic.matches(destination: 0x13, logical: true))
  }

  func testGuestValuesNeverTrap() {
    var g = SystemRandomNumberGenerator()
    for _ in 0..<20000 {
      let off = UInt64.random(in: 0..<0x1008, using: &g)
      let size = [1, 2, 4, 8].randomElement(using: &g) ?? 4
      apic.mmioWrite(offset: off & ~0xF, size: size, value: g.next())
      _ = apic.mmioRead(offset: off, size: size)
      clock.advance(by: UInt64.random(in: 0..<1000, using: &g))
      apic.poll(now: clock.nanoseconds)
      apic.writeTSCDeadline(g.next())
      _ = apic.acknowledge()
    }
  }
}

extension LocalAPICTests {
  /// A self-NMI is latched for the CPU; IPIs nothing can act on are counted.
  func testSelfNMILatchedAndOtherIPIsCounted() {
    enable()
    w(0x300, 0x4_0400)  // self shorthand, NMI
    XCTAssertTrue(apic.nmiPending)
    w(0x300, 0x4_0400)
    apic.acknowledgeNMI()
    XCTAssertFalse(apic.nmiPending, "NMIs do not queue")
    XCTAssertEqual(apicBus.unhandledIPIs, 0)
    w(0x310, 0x0100_0000)
    w(0x300, 0x0400)  // NMI to APIC 1: no such CPU
    XCTAssertFalse(apic.nmiPending)
    w(0x300, 0xC500)  // INIT with no VMM to act on it
    w(0x300, 0x0200)  // SMI
    XCTAssertEqual(apicBus.unhandledIPIs, 2)
  }
}

extension LocalAPICTests {
  /// CR8 is TPR[7:4] (kvm-unit-tests: "CR8 is not TPR").
  func testTaskPriorityClassIsTPRHighNibble() {
    enable()
    w(0x80, 0xFF)
    XCTAssertEqual(apic.taskPriorityClass, 0xF)
    apic.taskPriorityClass = 0x3
    XCTAssertEqual(r(0x80), 0x30)
  }
}

/// LAPIC behaviour kvm-unit-tests' apic checks (docs/KVM-UNIT-TESTS.md).
extension LocalAPICTests {
  /// "change mode": one-shot to periodic keeps counting from the current count and
  /// then reloads; periodic to one-shot counts down to 0 and stops there.
  func testTimerModeChangeKeepsTheCount() {
    enable()
    w(0x3E0, 0xB)  // divide by 1
    w(0x320, 0x00030)  // one-shot
    w(0x380, 100)
    clock.set(to: 60)
    w(0x320, 0x20030)  // periodic
    XCTAssertEqual(r(0x390), 40, "not reset, not stopped")
    XCTAssertEqual(apic.nextDeadline, 100)
    apic.poll(now: 100)
    clock.set(to: 110)
    XCTAssertEqual(r(0x390), 90, "reloaded from the initial count")
    clock.set(to: 170)
    w(0x320, 0x00030)  // back to one-shot at count 30
    XCTAssertEqual(r(0x390), 30)
    XCTAssertEqual(apic.nextDeadline, 200)
    apic.poll(now: 200)
    clock.set(to: 250)
    XCTAssertEqual(r(0x390), 0, "one-shot ends at 0")
    w(0x320, 0x20030)
    XCTAssertEqual(r(0x390), 0, "an expired one-shot count stays 0 in periodic mode")
    XCTAssertNil(apic.nextDeadline)
  }

  /// "correct xapic id after reset": a global disable and enable restore the power-up ID.
  func testGlobalReenableRestoresThePowerUpID() {
    enable()
    w(0x20, 0x0500_0000)
    XCTAssertEqual(r(0x20), 0x0500_0000, "the xAPIC ID is writable")
    XCTAssertTrue(apic.writeAPICBase(0xFEE0_0100))
    XCTAssertTrue(apic.writeAPICBase(0xFEE0_0900))
    XCTAssertEqual(r(0x20), 0)
  }
}
