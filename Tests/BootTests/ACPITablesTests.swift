import Foundation
import Memory
import XCTest

@testable import Boot

final class ACPITablesTests: XCTestCase {
  /// Reads tables back out of guest memory, the way a guest would.
  struct Reader {
    let mem: GuestMemory
    func u8(_ a: UInt64) throws -> UInt8 { try mem.read(GuestPhysicalAddress(a)) }
    func u16(_ a: UInt64) throws -> UInt16 { try mem.read(GuestPhysicalAddress(a)) }
    func u32(_ a: UInt64) throws -> UInt32 { try mem.read(GuestPhysicalAddress(a)) }
    func u64(_ a: UInt64) throws -> UInt64 { try mem.read(GuestPhysicalAddress(a)) }
    func bytes(_ a: UInt64, _ n: Int) throws -> [UInt8] {
      try mem.readBytes(GuestPhysicalAddress(a), count: n)
    }
    func sig(_ a: UInt64) throws -> String { String(decoding: try bytes(a, 4), as: UTF8.self) }
    /// A whole table whose bytes sum to zero.
    func table(_ a: UInt64, _ signature: String) throws -> [UInt8] {
      XCTAssertEqual(try sig(a), signature)
      let len = Int(try u32(a + 4))
      XCTAssertGreaterThanOrEqual(len, 36)
      let t = try bytes(a, len)
      XCTAssertEqual(t.reduce(0, &+), 0, "\(signature) checksum")
      return t
    }
  }

  func le(_ t: [UInt8], _ o: Int, _ n: Int) -> UInt64 {
    (0..<n).reduce(0) { $0 | UInt64(t[o + $1]) << (8 * UInt64($1)) }
  }

  func testTablesParseBackWithValidChecksums() throws {
    let mem = try GuestMemory(size: 128 << 20)
    var cfg = ACPIConfig(cpuCount: 4)
    cfg.ioapicID = 4
    let layout = try ACPITables.install(cfg, into: mem)
    let r = Reader(mem: mem)
    let area = MemoryMap.firmwareArea(for: mem)!
    XCTAssertEqual(layout.rsdp, area)
    XCTAssertEqual(layout.rsdp % 16, 0)
    XCTAssertLessThanOrEqual(layout.size, Int(MemoryMap.firmwareAreaSize))

    // RSDP v2: checksum over 20 bytes, extended checksum over 36.
    let rsdp = try r.bytes(layout.rsdp, 36)
    XCTAssertEqual(Array(rsdp[0..<8]), Array("RSD PTR ".utf8))
    XCTAssertEqual(rsdp[0..<20].reduce(0, &+), 0)
    XCTAssertEqual(rsdp.reduce(0, &+), 0)
    XCTAssertEqual(rsdp[15], 2)
    XCTAssertEqual(le(rsdp, 20, 4), 36)
    let rsdt = le(rsdp, 16, 4)
    let xsdt = le(rsdp, 24, 8)

    let x = try r.table(xsdt, "XSDT")
    let xEntries = (0..<(x.count - 36) / 8).map { le(x, 36 + 8 * $0, 8) }
    let rt = try r.table(rsdt, "RSDT")
    let rEntries = (0..<(rt.count - 36) / 4).map { le(rt, 36 + 4 * $0, 4) }
    XCTAssertEqual(xEntries, rEntries)
    let sigs = try xEntries.map { try r.sig($0) }
    XCTAssertEqual(Set(sigs), ["FACP", "APIC"])

    // FADT.
    let fadtAddr = xEntries[sigs.firstIndex(of: "FACP")!]
    let f = try r.table(fadtAddr, "FACP")
    XCTAssertEqual(f.count, 276)
    XCTAssertGreaterThanOrEqual(f[8], 5, "FADT revision")
    XCTAssertEqual(le(f, 46, 2), 9, "SCI_INT")
    XCTAssertEqual(le(f, 48, 4), 0, "no SMI_CMD")
    XCTAssertEqual(le(f, 56, 4), 0x600)
    XCTAssertEqual(le(f, 64, 4), 0x604)
    XCTAssertEqual(le(f, 76, 4), 0x608)
    XCTAssertEqual(f[88], 4)
    XCTAssertEqual(f[89], 2)
    XCTAssertEqual(f[91], 4)
    XCTAssertEqual(f[108], 0x32, "century")
    let bootArch = le(f, 109, 2)
    XCTAssertEqual(bootArch & 0x2, 0x2, "8042")
    XCTAssertEqual(bootArch & 0x4, 0x4, "VGA not present")
    let flags = le(f, 112, 4)
    XCTAssertEqual(flags & (1 << 20), 0, "HW_REDUCED_ACPI off")
    XCTAssertEqual(flags & (1 << 8), 1 << 8, "32-bit PM timer")
    XCTAssertEqual(le(f, 148, 1), 1, "X_PM1a_EVT in I/O space")
    XCTAssertEqual(le(f, 148 + 4, 8), 0x600)
    XCTAssertEqual(le(f, 208 + 4, 8), 0x608)
    let dsdt = le(f, 40, 4)
    XCTAssertEqual(le(f, 140, 8), dsdt)
    let facs = le(f, 36, 4)
    XCTAssertEqual(le(f, 132, 8), 0, "X_FIRMWARE_CTRL must be 0 when FIRMWARE_CTRL is set")
    XCTAssertEqual(facs % 64, 0)
    XCTAssertEqual(try r.sig(facs), "FACS")
    XCTAssertEqual(try r.u32(facs + 4), 64)

    // MADT.
    let m = try r.table(xEntries[sigs.firstIndex(of: "APIC")!], "APIC")
    XCTAssertEqual(le(m, 36, 4), 0xFEE0_0000)
    XCTAssertEqual(le(m, 40, 4) & 1, 1, "PCAT_COMPAT")
    var o = 44
    var cpus: [(UInt8, UInt8)] = []
    var ioapics: [(UInt8, UInt64, UInt64)] = []
    var overrides: [UInt8: (UInt64, UInt64)] = [:]
    var nmis = 0
    while o < m.count {
      let type = m[o]
      let len = Int(m[o + 1])
      XCTAssertGreaterThan(len, 0)
      switch type {
      case 0:
        XCTAssertEqual(len, 8)
        XCTAssertEqual(le(m, o + 4, 4) & 1, 1)
        cpus.append((m[o + 2], m[o + 3]))
      case 1:
        XCTAssertEqual(len, 12)
        ioapics.append((m[o + 2], le(m, o + 4, 4), le(m, o + 8, 4)))
      case 2:
        XCTAssertEqual(len, 10)
        overrides[m[o + 3]] = (le(m, o + 4, 4), le(m, o + 8, 2))
      case 4: nmis += 1
      default: XCTFail("unexpected MADT entry type \(type)")
      }
      o += len
    }
    XCTAssertEqual(o, m.count)
    XCTAssertEqual(cpus.map(\.1), [0, 1, 2, 3])
    XCTAssertEqual(ioapics.count, 1)
    XCTAssertEqual(ioapics.first?.0, 4)
    XCTAssertEqual(ioapics.first?.1, 0xFEC0_0000)
    XCTAssertEqual(ioapics.first?.2, 0)
    XCTAssertEqual(overrides[0]?.0, 2, "IRQ0 -> GSI2")
    XCTAssertEqual(overrides[9]?.0, 9)
    XCTAssertEqual(overrides[9]?.1, 0xD, "SCI level, active high")
    XCTAssertEqual(nmis, 1)

    // DSDT: AML with \_S5 = Package { 5, 5, 0, 0 }.
    let d = try r.table(dsdt, "DSDT")
    XCTAssertEqual(d[8], 2)
    let s5: [UInt8] =
      [0x08, 0x5C] + Array("_S5_".utf8) + [0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00]
    XCTAssertNotNil(d.firstRange(of: s5), "\\_S5 package")
    XCTAssertNotNil(d.firstRange(of: [0x10] as [UInt8]))
    XCTAssertNotNil(d.firstRange(of: Array("_SB_".utf8)))
    XCTAssertEqual(ACPITables.s5SleepType, 5)
  }

  func testPMTimerCanBeLeftOut() throws {
    var cfg = ACPIConfig()
    cfg.pmTimer = false
    let (blob, layout) = try ACPITables.build(cfg, at: 0x10_0000)
    let o = Int(layout.fadt - 0x10_0000)
    let f = Array(blob[o..<(o + 276)])
    XCTAssertEqual(f.reduce(0, &+), 0)
    XCTAssertEqual(le(f, 76, 4), 0)
    XCTAssertEqual(f[91], 0)
    XCTAssertEqual(le(f, 112, 4) & (1 << 8), 0)
    XCTAssertEqual(le(f, 208 + 4, 8), 0)
  }

  func testRefusesBadCPUCountsAndTinyMemory() throws {
    XCTAssertThrowsError(try ACPITables.build(ACPIConfig(cpuCount: 0), at: 0xE0000))
    XCTAssertThrowsError(try ACPITables.build(ACPIConfig(cpuCount: 256), at: 0xE0000))
    XCTAssertNoThrow(try ACPITables.build(ACPIConfig(cpuCount: 255), at: 0xE0000))
    let tiny = try GuestMemory(size: 1 << 20)
    XCTAssertThrowsError(try ACPITables.install(ACPIConfig(), into: tiny))
  }

  func testAMLEncodings() {
    XCTAssertEqual(AML.pkgLength(10), [11])
    XCTAssertEqual(AML.pkgLength(62), [63])
    // 63 bytes of payload + 2 bytes of PkgLength = 65 = 0x41: lead 0x41, then 0x04.
    XCTAssertEqual(AML.pkgLength(63), [0x41, 0x04])
    let n = 5003  // 5000 + 3 PkgLength bytes
    XCTAssertEqual(
      AML.pkgLength(5000), [UInt8(0x80 | (n & 0xF)), UInt8((n >> 4) & 0xFF), UInt8(n >> 12)])
    XCTAssertEqual(AML.integer(0), [0])
    XCTAssertEqual(AML.integer(1), [1])
    XCTAssertEqual(AML.integer(0x12), [0x0A, 0x12])
    XCTAssertEqual(AML.integer(0x1234), [0x0B, 0x34, 0x12])
    XCTAssertEqual(AML.integer(0x1_0000), [0x0C, 0, 0, 1, 0])
    XCTAssertEqual(AML.name("\\_SB.PCI0"), [0x5C, 0x2E] + Array("_SB_PCI0".utf8))
    XCTAssertEqual(AML.name("_S5"), Array("_S5_".utf8))
    XCTAssertEqual(AML.eisaID("PNP0303"), [0x0C, 0x41, 0xD0, 0x03, 0x03])
  }

  /// Decompiles our tables with ACPICA's iasl when it is installed.
  func testIaslDisassemblesOurTables() throws {
    let iasl = ["/usr/bin/iasl", "/usr/local/bin/iasl"].first {
      FileManager.default.isExecutableFile(atPath: $0)
    }
    guard let iasl else {
      throw XCTSkip(
        "iasl not installed (apt-get install acpica-tools); structure is checked by the parser test"
      )
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "svacpi-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let (blob, layout) = try ACPITables.build(ACPIConfig(cpuCount: 2), at: 0x1000_0000)
    func slice(_ at: UInt64) -> [UInt8] {
      let o = Int(at - 0x1000_0000)
      let len = Int(le(blob, o + 4, 4))
      return Array(blob[o..<(o + len)])
    }
    for (name, at) in [("dsdt", layout.dsdt), ("facp", layout.fadt), ("apic", layout.madt)] {
      let file = dir.appendingPathComponent("\(name).dat")
      try Data(slice(at)).write(to: file)
      let p = Process()
      p.executableURL = URL(fileURLWithPath: iasl)
      p.arguments = ["-d", file.path]
      p.currentDirectoryURL = dir
      let out = Pipe()
      p.standardOutput = out
      p.standardError = out
      try p.run()
      let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      p.waitUntilExit()
      XCTAssertEqual(p.terminationStatus, 0, log)
      let dsl = try String(contentsOf: dir.appendingPathComponent("\(name).dsl"), encoding: .utf8)
      print("iasl -d \(name):\n\(dsl)")
      XCTAssertFalse(dsl.contains("Invalid"), dsl)
      XCTAssertFalse(dsl.lowercased().contains("incorrect checksum"), dsl)
      if name == "dsdt" {
        XCTAssertTrue(dsl.contains("Name (\\_S5, Package (0x04)"), dsl)
        XCTAssertTrue(dsl.contains("PNP0501"), dsl)
        // The PCI root bridge: its BAR window and the INTx routing the device manager wires.
        let p = PlatformLayout()
        XCTAssertTrue(dsl.contains("Device (PCI0)"), dsl)
        XCTAssertTrue(dsl.contains("PNP0A03"), dsl)
        XCTAssertTrue(dsl.contains("Name (_PRT, Package (0x7C)"), dsl)
        XCTAssertTrue(dsl.contains("DWordMemory (ResourceProducer"), dsl)
        let flat = dsl.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(
          flat.contains("0xC0000000, // Range Minimum 0xFEBFFFFF, // Range Maximum"), dsl)
        let slot3INTB =
          "0x0003FFFF, One, Zero, 0x"
          + String(p.pciINTxGSI(slot: 3, pin: 2), radix: 16, uppercase: true) + " }"
        XCTAssertTrue(flat.contains(slot3INTB), dsl)
        // Recompile the disassembly: it must assemble without errors.
        let c = Process()
        c.executableURL = URL(fileURLWithPath: iasl)
        c.arguments = [
          "-p", dir.appendingPathComponent("re").path, dir.appendingPathComponent("dsdt.dsl").path,
        ]
        c.currentDirectoryURL = dir
        let cout = Pipe()
        c.standardOutput = cout
        c.standardError = cout
        try c.run()
        let clog = String(decoding: cout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        c.waitUntilExit()
        XCTAssertEqual(c.terminationStatus, 0, clog)
      }
    }
  }
}
