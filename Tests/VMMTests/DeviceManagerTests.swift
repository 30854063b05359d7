import Boot
import Devices
import XCTest

@testable import VMM

/// A device with BARs and an INTx pin, for the device manager.
private final class BARDevice: PCIConfigSpace, PCIDevice {
  init(bars: [(Int, PCIBARDescriptor)], pin: UInt8 = 1) throws {
    super.init(vendor: 0x1AF4, device: 0x1042, classCode: 0x01_8000)
    for (i, d) in bars { try declareBAR(i, d) }
    interruptPin = pin
  }
  func barRead(bar: Int, offset: UInt64, size: Int) -> UInt64 { UInt64(bar) << 32 | offset }
  func barWrite(bar: Int, offset: UInt64, size: Int, value: UInt64) {}
}

/// Records line levels, like an interrupt controller's input pins.
private final class Pins: InterruptLines {
  var levels: [Int: Bool] = [:]
  var changes = 0
  func setLevel(irq: Int, high: Bool) {
    levels[irq] = high
    changes += 1
  }
}

final class DeviceManagerTests: XCTestCase {
  private func make(_ layout: PlatformLayout = PlatformLayout()) -> (
    DeviceManager, MMIOBus, Pins
  ) {
    let bus = MMIOBus()
    let pins = Pins()
    return (
      DeviceManager(layout: layout, pciHost: PCIHost(mmioBus: bus), interruptLines: pins), bus, pins
    )
  }

  func testPlacesBARsInTheWindowAlignedAndMapped() throws {
    let (dm, bus, _) = make()
    let dev = try BARDevice(bars: [
      (0, PCIBARDescriptor(size: 0x1000)), (2, PCIBARDescriptor(size: 0x10_0000, is64Bit: true)),
    ])
    let r = try dm.addPCIDevice(dev, name: "disk0")
    XCTAssertEqual(r.slot, 1)
    XCTAssertEqual(r.bars.count, 2)
    let window = dm.layout.pciMMIOWindow
    for b in r.bars {
      XCTAssertTrue(window.contains(b.base) && window.contains(b.base + b.size - 1))
      XCTAssertEqual(b.base % b.size, 0)
      XCTAssertEqual(dev.barAddress(b.index), b.base)
      XCTAssertEqual(bus.read(address: b.base + 8, size: 4), UInt64(b.index) << 32 | 8)
    }
    XCTAssertNotEqual(dev.command & PCIConfigSpace.commandMemorySpace, 0)
    let r2 = try dm.addPCIDevice(
      try BARDevice(bars: [(0, PCIBARDescriptor(size: 0x1000))]), name: "rng")
    XCTAssertEqual(r2.slot, 2)
    XCTAssertFalse(r.bars.contains { $0.base == r2.bars[0].base })
  }

  func testSlotConflictsAreRefusedByName() throws {
    let (dm, _, _) = make()
    try dm.addPCIDevice(try BARDevice(bars: []), name: "disk0", slot: 4)
    XCTAssertThrowsError(try dm.addPCIDevice(try BARDevice(bars: []), name: "disk1", slot: 4)) {
      XCTAssertEqual(
        $0 as? DeviceManagerError, .slotInUse(device: "disk1", slot: 4, by: "disk0"))
    }
    XCTAssertThrowsError(try dm.allocateSlot(for: "x", preferred: 0)) {
      XCTAssertEqual($0 as? DeviceManagerError, .slotOutOfRange(device: "x", slot: 0))
    }
    XCTAssertThrowsError(try dm.allocateSlot(for: "x", preferred: 32)) {
      XCTAssertEqual($0 as? DeviceManagerError, .slotOutOfRange(device: "x", slot: 32))
    }
    for _ in 0..<30 { _ = try dm.allocateSlot(for: "filler") }
    XCTAssertThrowsError(try dm.allocateSlot(for: "one too many")) {
      XCTAssertEqual($0 as? DeviceManagerError, .noFreeSlot(device: "one too many"))
    }
  }

  func testWindowExhaustionIsANamedErrorAndReleasesTheSlot() throws {
    var layout = PlatformLayout()
    layout.pciMMIOWindow = 0xE000_0000..<0xE000_4000
    let (dm, _, _) = make(layout)
    try dm.addPCIDevice(try BARDevice(bars: [(0, PCIBARDescriptor(size: 0x2000))]), name: "a")
    XCTAssertThrowsError(
      try dm.addPCIDevice(try BARDevice(bars: [(0, PCIBARDescriptor(size: 0x4000))]), name: "b")
    ) {
      XCTAssertEqual($0 as? DeviceManagerError, .mmioWindowFull(device: "b BAR0", size: 0x4000))
    }
    // The failed device's slot is free again and the window still has room.
    let r = try dm.addPCIDevice(
      try BARDevice(bars: [(0, PCIBARDescriptor(size: 0x2000))]), name: "c")
    XCTAssertEqual(r.slot, 2)
    XCTAssertEqual(r.bars.first?.base, 0xE000_2000)
  }

  func testIRQClaimsAndINTxRoutingMatchTheLayout() throws {
    let (dm, _, pins) = make()
    try dm.claimIRQ(4, for: "uart0")
    XCTAssertThrowsError(try dm.claimIRQ(4, for: "uart1")) {
      XCTAssertEqual($0 as? DeviceManagerError, .irqInUse(device: "uart1", irq: 4, by: "uart0"))
    }
    XCTAssertThrowsError(try dm.claimIRQ(17, for: "isa")) {
      XCTAssertEqual(
        $0 as? DeviceManagerError, .irqInUse(device: "isa", irq: 17, by: "PCI INTx routing"))
    }
    XCTAssertThrowsError(try dm.claimIRQ(24, for: "isa")) {
      XCTAssertEqual($0 as? DeviceManagerError, .irqOutOfRange(device: "isa", irq: 24))
    }
    // Slots 1 and 9 share a GSI under the swizzle; the line is a wired OR.
    let a = try BARDevice(bars: [])
    let b = try BARDevice(bars: [])
    let ra = try dm.addPCIDevice(a, name: "a", slot: 1)
    let rb = try dm.addPCIDevice(b, name: "b", slot: 9)
    XCTAssertEqual(ra.intxGSI, dm.layout.pciINTxGSI(slot: 1, pin: 1))
    XCTAssertEqual(ra.intxGSI, rb.intxGSI)
    XCTAssertEqual(ra.intxGSI, 17)
    XCTAssertEqual(a.bytes[0x3C], 17, "interrupt line register says the GSI")
    let gsi = ra.intxGSI!
    dm.intxLine(slot: 1)?.set(true)
    dm.intxLine(slot: 9)?.set(true)
    dm.intxLine(slot: 1)?.set(false)
    XCTAssertEqual(pins.levels[gsi], true, "b still asserts the shared line")
    dm.intxLine(slot: 9)?.set(false)
    XCTAssertEqual(pins.levels[gsi], false)
    XCTAssertEqual(pins.changes, 2)
  }

  func testMSIXVectorBudgetIsEnforced() throws {
    let (dm, _, _) = make()
    try dm.allocateMSIXVectors(1000, for: "a")
    XCTAssertThrowsError(try dm.allocateMSIXVectors(100, for: "b")) {
      XCTAssertEqual(
        $0 as? DeviceManagerError, .msixVectorsExhausted(device: "b", wanted: 100, left: 24))
    }
    try dm.allocateMSIXVectors(24, for: "b")
    XCTAssertThrowsError(try dm.allocateMSIXVectors(0, for: "c"))
  }

  func testLayoutAgreesWithTheDevicesArchitecturalDefaults() {
    let l = PlatformLayout()
    XCTAssertEqual(l.localAPICBase, LocalAPIC.defaultBase)
    XCTAssertEqual(l.ioapicPins, IOAPIC.pinCount)
    XCTAssertTrue(l.pciMMIOWindow.upperBound <= l.ioapicBase)
    XCTAssertTrue(l.pciHole.contains(l.pciMMIOWindow.lowerBound))
  }
}
