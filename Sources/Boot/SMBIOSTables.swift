import Memory

/// SMBIOS 2.8 tables (the 32-bit "_SM_" entry point) in the legacy BIOS area,
/// where Linux's DMI scan looks without EFI: BIOS information (type 0),
/// system information (type 1) and the end marker. Guests then identify the
/// machine ("DMI: SwiftVMM ...") as they would on QEMU's PC.
public enum SMBIOSTables {
  /// Entry point; the structure table follows it. Inside the e820-reserved 0xF0000 page.
  public static let entryPoint: UInt64 = 0xF_0000
  static let tableAddress: UInt64 = entryPoint + 0x20

  public static let vendor = "SwiftVMM"
  public static let product = "SwiftVMM PC"
  public static let version = "1.0"
  public static let releaseDate = "11/24/2026"

  /// A structure: formatted area, then its strings, then a double NUL.
  static func structure(_ formatted: [UInt8], strings: [String]) -> [UInt8] {
    var b = formatted
    if strings.isEmpty {
      b += [0, 0]
    } else {
      for s in strings { b += Array(s.utf8) + [0] }
      b.append(0)
    }
    return b
  }

  static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
  static func le32(_ v: UInt32) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
  }

  /// The structure table (types 0, 1, 127).
  static func table() -> (bytes: [UInt8], count: UInt16, largest: UInt16) {
    var bios: [UInt8] = [0, 0x18] + le16(0x0000)
    bios += [1, 2] + le16(0xE800) + [3, 0]  // vendor, version, segment, date, ROM 64 KiB
    bios += [0x08, 0, 0, 0, 0, 0, 0, 0]  // characteristics: "not supported"
    bios += [0x00, 0x10]  // extension byte 2, bit 4: a virtual machine
    bios += [1, 0, 0xFF, 0xFF]  // BIOS release 1.0, no embedded controller
    var system: [UInt8] = [1, 27] + le16(0x0100) + [1, 2, 3, 0]
    system += [UInt8](repeating: 0, count: 16)  // UUID: not set
    system += [6, 0, 0]  // wake-up: power switch; no SKU, no family
    let parts = [
      structure(bios, strings: [vendor, version, releaseDate]),
      structure(system, strings: [vendor, product, version]),
      structure([127, 4] + le16(0x7F00), strings: []),
    ]
    return (parts.flatMap { $0 }, UInt16(parts.count), UInt16(parts.map(\.count).max() ?? 0))
  }

  static func checksum(_ b: ArraySlice<UInt8>) -> UInt8 {
    0 &- b.reduce(UInt8(0), &+)
  }

  /// Writes the entry point and table; returns the entry point's address.
  @discardableResult
  public static func install(into memory: GuestMemory) throws -> UInt64 {
    let t = table()
    var ep: [UInt8] = Array("_SM_".utf8) + [0, 0x1F, 2, 8] + le16(t.largest) + [0, 0, 0, 0, 0, 0]
    ep += Array("_DMI_".utf8) + [0] + le16(UInt16(t.bytes.count)) + le32(UInt32(tableAddress))
    ep += le16(t.count) + [0x28]
    ep[21] = checksum(ep[16..<31])
    ep[4] = checksum(ep[0..<31])
    try memory.write(GuestPhysicalAddress(entryPoint), bytes: ep)
    try memory.write(GuestPhysicalAddress(tableAddress), bytes: t.bytes)
    return entryPoint
  }
}
