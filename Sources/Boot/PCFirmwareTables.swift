import Memory

/// What PC firmware (SeaBIOS) leaves in memory when it hands over to a boot loader:
/// the ACPI tables, with the RSDP also in the BIOS area where guests scan for it
/// (0xE0000-0xFFFFF, 16-byte aligned), the SMBIOS entry point and the BIOS data area.
/// Linux and multiboot boots both get it from here, so the platform's tables are defined once.
public enum PCFirmwareTables {
  /// The RSDP's copy in the e820-reserved BIOS page, after the SMBIOS entry point and
  /// its structures (SeaBIOS puts its RSDP in the same F segment).
  public static let biosAreaRSDP: UInt64 = 0xF_0400

  /// Whether `memory` has room for the tables: conventional memory, the BIOS page and
  /// the firmware area at the top of low RAM (the unit tests' tiny machines do not).
  public static func fits(in memory: GuestMemory) -> Bool {
    memory.isRAM(GuestPhysicalAddress(0), length: 0x10_0000)
      && MemoryMap.firmwareArea(for: memory) != nil
  }

  /// Installs the tables for `acpi`; returns their layout (`rsdp` is the firmware-area copy,
  /// which the Linux loaders pass to the kernel directly).
  @discardableResult
  public static func install(_ acpi: ACPIConfig, into memory: GuestMemory) throws
    -> ACPITables.Layout
  {
    let tables = try ACPITables.install(acpi, into: memory)
    let rsdp = try memory.readBytes(GuestPhysicalAddress(tables.rsdp), count: 36)
    try memory.write(GuestPhysicalAddress(biosAreaRSDP), bytes: rsdp)
    try SMBIOSTables.install(into: memory)
    try BIOSDataArea.install(into: memory)
    return tables
  }
}
