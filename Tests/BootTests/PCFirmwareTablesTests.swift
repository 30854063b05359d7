import Memory
import TestSupport
import XCTest

@testable import Boot

/// Multiboot kernels find the firmware tables as SeaBIOS leaves them under QEMU: the RSDP by
/// scanning the BIOS area (Xen does, and finds nothing without it), the same tables the Linux
/// boot path gets.
final class PCFirmwareTablesTests: XCTestCase {
  /// The first RSDP a guest finds scanning 0xE0000-0xFFFFF on 16-byte boundaries
  /// (ACPI 6, 5.2.5.1), checksums included.
  func scanForRSDP(_ mem: GuestMemory) throws -> UInt64? {
    for a in stride(from: UInt64(0xE_0000), to: 0x10_0000, by: 16) {
      let b = try mem.readBytes(GuestPhysicalAddress(a), count: 36)
      if b[0..<8].elementsEqual("RSD PTR ".utf8), b[0..<20].reduce(0, &+) == 0,
        b.reduce(0, &+) == 0
      {
        return a
      }
    }
    return nil
  }

  func testMultibootGuestFindsTheLinuxPathsTablesByScanning() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let acpi = ACPIConfig(cpuCount: 2)
    let image = try KernelLoader.load(
      try GuestImages.bytes("hello.elf"), commandLine: "", acpi: acpi, into: mem)
    let found = try XCTUnwrap(try scanForRSDP(mem), "no RSDP in the BIOS area")
    XCTAssertEqual(found, PCFirmwareTables.biosAreaRSDP)
    let tables = try XCTUnwrap(image.firmwareTables)

    // The same bytes, and so the same RSDT/XSDT, as the tables a Linux boot gets.
    let linuxMem = try GuestMemory(size: 64 << 20)
    let linux = try LinuxBoot.load(makeBzImage(), commandLine: "", acpi: acpi, into: linuxMem)
    XCTAssertEqual(linux.acpi, tables)
    XCTAssertEqual(linux.image.firmwareTables, tables)
    let rsdp = try mem.readBytes(GuestPhysicalAddress(found), count: 36)
    XCTAssertEqual(rsdp, try linuxMem.readBytes(GuestPhysicalAddress(linux.acpi.rsdp), count: 36))
    XCTAssertEqual(
      try mem.readBytes(GuestPhysicalAddress(tables.rsdp), count: tables.size),
      try linuxMem.readBytes(GuestPhysicalAddress(linux.acpi.rsdp), count: tables.size))
    // SMBIOS is there too, and its structures end before the RSDP's copy.
    XCTAssertEqual(
      try mem.readBytes(GuestPhysicalAddress(SMBIOSTables.entryPoint), count: 4),
      Array("_SM_".utf8))
    let smbiosLength: UInt16 = try mem.read(GuestPhysicalAddress(SMBIOSTables.entryPoint + 0x16))
    XCTAssertLessThanOrEqual(
      SMBIOSTables.tableAddress + UInt64(smbiosLength), PCFirmwareTables.biosAreaRSDP)
  }

  /// Without an ACPI description, or on a machine too small for the firmware area,
  /// a multiboot guest gets the BIOS data area only.
  func testNoTablesWithoutACPIOrRoom() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let image = try KernelLoader.load(
      try GuestImages.bytes("hello.elf"), commandLine: "", into: mem)
    XCTAssertNil(image.firmwareTables)
    XCTAssertNil(try scanForRSDP(mem))
    let small = try GuestMemory(size: 2 << 20)
    let image2 = try KernelLoader.load(
      try GuestImages.bytes("hello.elf"), commandLine: "", acpi: ACPIConfig(), into: small)
    XCTAssertNil(image2.firmwareTables)
  }

  /// A module that would overwrite the tables reserved at the top of low RAM is refused.
  func testModulesStayOutOfTheFirmwareArea() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let kernel = try GuestImages.bytes("hello.elf")
    _ = try KernelLoader.load(
      kernel, commandLine: "", modules: [.init(bytes: [1], name: "m")], acpi: ACPIConfig(),
      into: mem)
    let mods = UInt64(
      try mem.read(GuestPhysicalAddress(BootLayout.multibootInfo + 24), as: UInt32.self))
    let start = UInt64(try mem.read(GuestPhysicalAddress(mods), as: UInt32.self))
    let area = try XCTUnwrap(MemoryMap.firmwareArea(for: mem))
    let fits = [UInt8](repeating: 7, count: Int(area - start))
    XCTAssertNoThrow(
      try KernelLoader.load(
        kernel, commandLine: "", modules: [.init(bytes: fits, name: "m")], acpi: ACPIConfig(),
        into: try GuestMemory(size: 64 << 20)))
    XCTAssertThrowsError(
      try KernelLoader.load(
        kernel, commandLine: "", modules: [.init(bytes: fits + [7], name: "m")],
        acpi: ACPIConfig(), into: try GuestMemory(size: 64 << 20))
    ) { XCTAssertTrue("\($0)".contains("does not fit"), "\($0)") }
  }
}
