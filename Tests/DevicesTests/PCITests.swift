import XCTest

@testable import Devices

/// A PCI device with one 32-bit and one 64-bit BAR that records BAR accesses.
final class RecordingPCIDevice: PCIConfigSpace, PCIDevice {
  var reads: [(bar: Int, offset: UInt64)] = []
  var writes: [(bar: Int, offset: UInt64, value: UInt64)] = []

  init() throws {
    super.init(vendor: 0x1AF4, device: 0x1042, classCode: 0x01_8000)
    try declareBAR(0, PCIBARDescriptor(size: 0x1000))
    try declareBAR(2, PCIBARDescriptor(size: 0x4000, is64Bit: true, prefetchable: true))
  }

  func barRead(bar: Int, offset: UInt64, size: Int) -> UInt64 {
    reads.append((bar, offset))
    return 0xAB00 | UInt64(bar)
  }

  func barWrite(bar: Int, offset: UInt64, size: Int, value: UInt64) {
    writes.append((bar, offset, value))
  }
}

final class PCITests: XCTestCase {
  private func cfgWrite(_ host: PCIHost, slot: Int, _ reg: UInt8, _ v: UInt32, size: Int = 4) {
    host.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(reg & 0xFC))
    host.ioWrite(offset: 4 + UInt16(reg & 3), size: size, value: v)
  }

  private func cfgRead(_ host: PCIHost, slot: Int, _ reg: UInt8, size: Int = 4) -> UInt32 {
    host.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(reg & 0xFC))
    return host.ioRead(offset: 4 + UInt16(reg & 3), size: size)
  }

  func testBARSizeProbingReadsBackSizeMaskAndFlags() throws {
    let host = PCIHost()
    let dev = try RecordingPCIDevice()
    try host.attach(dev, device: 3)
    cfgWrite(host, slot: 3, 0x10, 0xFFFF_FFFF)
    XCTAssertEqual(cfgRead(host, slot: 3, 0x10), 0xFFFF_F000)
    // 64-bit prefetchable: type bits 10b and bit 3 survive the probe.
    cfgWrite(host, slot: 3, 0x18, 0xFFFF_FFFF)
    cfgWrite(host, slot: 3, 0x1C, 0xFFFF_FFFF)
    XCTAssertEqual(cfgRead(host, slot: 3, 0x18), 0xFFFF_C00C)
    XCTAssertEqual(cfgRead(host, slot: 3, 0x1C), 0xFFFF_FFFF)
    // Undeclared BARs read as zero and stay zero.
    cfgWrite(host, slot: 3, 0x14, 0xFFFF_FFFF)
    XCTAssertEqual(cfgRead(host, slot: 3, 0x14), 0)
    XCTAssertEqual(cfgRead(host, slot: 3, 0x24), 0)
  }

  func testBARMapsOnlyWithMemoryDecodingAndMovesWhenTheGuestRelocatesIt() throws {
    let bus = MMIOBus()
    let host = PCIHost(mmioBus: bus)
    let dev = try RecordingPCIDevice()
    try host.attach(dev, device: 1)
    cfgWrite(host, slot: 1, 0x10, 0xE000_0000)
    XCTAssertEqual(bus.read(address: 0xE000_0010, size: 4), 0xFFFF_FFFF, "decoding is off")
    cfgWrite(host, slot: 1, 0x04, 0x0002, size: 2)
    XCTAssertEqual(bus.read(address: 0xE000_0010, size: 4), 0xAB00)
    XCTAssertEqual(dev.reads.last?.offset, 0x10)
    // The guest moves BAR0: the old range goes away, the new one answers.
    cfgWrite(host, slot: 1, 0x10, 0xE010_0000)
    XCTAssertEqual(bus.read(address: 0xE000_0010, size: 4), 0xFFFF_FFFF)
    bus.write(address: 0xE010_0FF8, size: 4, value: 7)
    XCTAssertEqual(dev.writes.last?.bar, 0)
    XCTAssertEqual(dev.writes.last?.offset, 0xFF8)
    // A 64-bit BAR above 4 GiB.
    cfgWrite(host, slot: 1, 0x18, 0x0000_4000)
    cfgWrite(host, slot: 1, 0x1C, 0x0000_0001)
    XCTAssertEqual(bus.read(address: 0x1_0000_4000, size: 4), 0xAB02)
    // Sizing with decoding on must not map the probe value over other devices.
    cfgWrite(host, slot: 1, 0x10, 0xFFFF_FFFF)
    XCTAssertNil(bus.name(at: 0xFFFF_F000))
    XCTAssertNil(bus.name(at: 0xE010_0000))
    // Decoding off unmaps everything.
    cfgWrite(host, slot: 1, 0x04, 0, size: 2)
    XCTAssertNil(bus.name(at: 0x1_0000_4000))
  }

  func testBARPlacedOverAnotherDeviceStaysUnmapped() throws {
    let bus = MMIOBus()
    let ioapic = IOAPIC()
    try ioapic.register(on: bus)
    let host = PCIHost(mmioBus: bus)
    let dev = try RecordingPCIDevice()
    try host.attach(dev, device: 1)
    cfgWrite(host, slot: 1, 0x04, 0x0002, size: 2)
    cfgWrite(host, slot: 1, 0x10, UInt32(IOAPIC.defaultBase))
    XCTAssertEqual(bus.name(at: IOAPIC.defaultBase), "IOAPIC")
    cfgWrite(host, slot: 1, 0x10, 0xE000_0000)
    XCTAssertNotNil(bus.name(at: 0xE000_0000))
  }

  func testCapabilityListIsChainedFromTheStatusBit() throws {
    let dev = try RecordingPCIDevice()
    XCTAssertEqual(dev.get16(0x06) & PCIConfigSpace.statusCapabilityList, 0)
    let a = try dev.addCapability(id: 0x09, body: [1, 2, 3])
    let b = try dev.addCapability(id: 0x11, body: [UInt8](repeating: 0, count: 10))
    XCTAssertNotEqual(dev.get16(0x06) & PCIConfigSpace.statusCapabilityList, 0)
    XCTAssertEqual(Int(dev.bytes[0x34]), a)
    XCTAssertEqual(dev.bytes[a], 0x09)
    XCTAssertEqual(Int(dev.bytes[a + 1]), b)
    XCTAssertEqual(dev.bytes[b], 0x11)
    XCTAssertEqual(dev.bytes[b + 1], 0)
    XCTAssertEqual(a % 4, 0)
    XCTAssertEqual(b % 4, 0)
    XCTAssertThrowsError(try dev.addCapability(id: 0x09, body: [UInt8](repeating: 0, count: 250)))
  }

  func testBadBARDeclarationsAreRefused() throws {
    let dev = PCIConfigSpace(vendor: 1, device: 2, classCode: 0)
    XCTAssertThrowsError(try dev.declareBAR(0, PCIBARDescriptor(size: 0x1800)))
    XCTAssertThrowsError(try dev.declareBAR(5, PCIBARDescriptor(size: 0x1000, is64Bit: true)))
    XCTAssertThrowsError(try dev.declareBAR(6, PCIBARDescriptor(size: 0x1000)))
    try dev.declareBAR(0, PCIBARDescriptor(size: 0x1000, is64Bit: true))
    XCTAssertThrowsError(try dev.declareBAR(1, PCIBARDescriptor(size: 0x1000)))
    XCTAssertThrowsError(try dev.declareBAR(0, PCIBARDescriptor(size: 0x1000)))
  }
}

final class RecordingMSI: MSIDelivery {
  var messages: [(address: UInt64, data: UInt32)] = []
  func deliver(address: UInt64, data: UInt32) { messages.append((address, data)) }
}

final class MSIXTests: XCTestCase {
  private func make(_ n: Int = 4) throws -> (PCIConfigSpace, MSIXCapability, RecordingMSI) {
    let cfg = PCIConfigSpace(vendor: 0x1AF4, device: 0x1041, classCode: 0x02_0000)
    try cfg.declareBAR(1, PCIBARDescriptor(size: 0x1000))
    let sink = RecordingMSI()
    let msix = try MSIXCapability(
      vectorCount: n, config: cfg, tableBAR: 1, tableOffset: 0, pbaBAR: 1, pbaOffset: 0x800,
      delivery: sink)
    return (cfg, msix, sink)
  }

  private func setControl(_ cfg: PCIConfigSpace, _ msix: MSIXCapability, enable: Bool, mask: Bool) {
    let v: UInt32 = (enable ? 0x8000 : 0) | (mask ? 0x4000 : 0)
    cfg.configWrite(offset: UInt8(msix.capabilityOffset + 2), size: 2, value: v)
  }

  private func program(_ msix: MSIXCapability, _ v: Int, vector: UInt8, masked: Bool) {
    let o = UInt64(v) * 16
    _ = msix.barWrite(bar: 1, offset: o, size: 8, value: 0xFEE0_0000)
    _ = msix.barWrite(bar: 1, offset: o + 8, size: 4, value: UInt64(vector))
    _ = msix.barWrite(bar: 1, offset: o + 12, size: 4, value: masked ? 1 : 0)
  }

  func testCapabilityAdvertisesTableSizeAndLocations() throws {
    let (cfg, msix, _) = try make(3)
    let at = msix.capabilityOffset
    XCTAssertEqual(cfg.bytes[at], 0x11)
    XCTAssertEqual(cfg.get16(at + 2) & 0x7FF, 2)
    XCTAssertEqual(cfg.get32(at + 4), 0x0000_0001)
    XCTAssertEqual(cfg.get32(at + 8), 0x0000_0801)
    // Only enable and function mask are writable in message control.
    cfg.configWrite(offset: UInt8(at + 2), size: 2, value: 0xFFFF)
    XCTAssertEqual(cfg.get16(at + 2), 0xC002)
  }

  func testDisabledMSIXFallsBackAndEntriesStartMasked() throws {
    let (cfg, msix, sink) = try make()
    XCTAssertFalse(msix.signal(0), "disabled: the device must use INTx")
    setControl(cfg, msix, enable: true, mask: false)
    XCTAssertEqual(msix.barRead(bar: 1, offset: 12, size: 4), 1, "vectors start masked")
    XCTAssertTrue(msix.signal(0))
    XCTAssertTrue(sink.messages.isEmpty)
    XCTAssertTrue(msix.isPending(0))
    XCTAssertEqual(msix.barRead(bar: 1, offset: 0x800, size: 8), 1)
  }

  func testUnmaskingDeliversThePendingMessageOnce() throws {
    let (cfg, msix, sink) = try make()
    setControl(cfg, msix, enable: true, mask: false)
    program(msix, 2, vector: 0x41, masked: true)
    XCTAssertTrue(msix.signal(2))
    XCTAssertTrue(msix.signal(2))
    XCTAssertTrue(sink.messages.isEmpty)
    _ = msix.barWrite(bar: 1, offset: 2 * 16 + 12, size: 4, value: 0)
    XCTAssertEqual(sink.messages.count, 1)
    XCTAssertEqual(sink.messages.first?.address, 0xFEE0_0000)
    XCTAssertEqual(sink.messages.first?.data, 0x41)
    XCTAssertFalse(msix.isPending(2))
    XCTAssertTrue(msix.signal(2))
    XCTAssertEqual(sink.messages.count, 2, "unmasked: delivered at once")
  }

  func testFunctionMaskHoldsEveryVectorUntilCleared() throws {
    let (cfg, msix, sink) = try make()
    setControl(cfg, msix, enable: true, mask: true)
    program(msix, 0, vector: 0x30, masked: false)
    program(msix, 3, vector: 0x33, masked: false)
    msix.signal(0)
    msix.signal(3)
    XCTAssertTrue(sink.messages.isEmpty)
    XCTAssertEqual(msix.barRead(bar: 1, offset: 0x800, size: 4), 0b1001)
    setControl(cfg, msix, enable: true, mask: false)
    XCTAssertEqual(sink.messages.map(\.data), [0x30, 0x33])
    XCTAssertEqual(msix.barRead(bar: 1, offset: 0x800, size: 8), 0)
  }

  func testPBAIsReadOnlyAndOddAccessesAreHarmless() throws {
    let (cfg, msix, _) = try make()
    setControl(cfg, msix, enable: true, mask: false)
    msix.signal(1)
    XCTAssertTrue(msix.barWrite(bar: 1, offset: 0x800, size: 8, value: 0))
    XCTAssertTrue(msix.isPending(1))
    // Unaligned and byte accesses inside the table are ignored / read 0.
    XCTAssertTrue(msix.barWrite(bar: 1, offset: 1 * 16 + 13, size: 1, value: 0))
    XCTAssertTrue(msix.isPending(1))
    XCTAssertEqual(msix.barRead(bar: 1, offset: 3, size: 4), 0)
    // Outside the table and PBA: not MSI-X's.
    XCTAssertNil(msix.barRead(bar: 1, offset: 0x400, size: 4))
    XCTAssertNil(msix.barRead(bar: 0, offset: 0, size: 4))
    XCTAssertFalse(msix.barWrite(bar: 1, offset: 0x400, size: 4, value: 0))
    XCTAssertFalse(msix.signal(99))
    XCTAssertFalse(msix.signal(-1))
  }

  func testBadGeometryIsRefused() {
    let cfg = PCIConfigSpace(vendor: 1, device: 2, classCode: 0)
    XCTAssertThrowsError(
      try MSIXCapability(
        vectorCount: 0, config: cfg, tableBAR: 0, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x800))
    XCTAssertThrowsError(
      try MSIXCapability(
        vectorCount: 4, config: cfg, tableBAR: 0, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x20))
    XCTAssertThrowsError(
      try MSIXCapability(
        vectorCount: 4, config: cfg, tableBAR: 0, tableOffset: 4, pbaBAR: 0, pbaOffset: 0x800))
  }

  func testMSIMessageReachesTheLocalAPIC() {
    let clock = ManualClock()
    let lapic = LocalAPIC(clock: clock, tscFrequency: 1_000_000_000)
    // Software-enable the APIC (SVR bit 8).
    lapic.mmioWrite(offset: 0xF0, size: 4, value: 0x1FF)
    let m = IOAPICMessage(msiAddress: 0xFEE0_0000, data: 0x45)
    XCTAssertNotNil(m)
    let bus = APICBus(apics: [lapic])
    bus.accept(m!)
    XCTAssertTrue(lapic.hasPendingInterrupt)
    XCTAssertEqual(lapic.acknowledge(), 0x45)
    XCTAssertNil(IOAPICMessage(msiAddress: 0x1000, data: 0x45))
    // A message for another APIC ID is not taken.
    let other = LocalAPIC(clock: clock, tscFrequency: 1_000_000_000)
    other.mmioWrite(offset: 0xF0, size: 4, value: 0x1FF)
    APICBus(apics: [other]).accept(IOAPICMessage(msiAddress: 0xFEE0_3000, data: 0x46)!)
    XCTAssertFalse(other.hasPendingInterrupt)
  }
}
