import Foundation
import Memory
import X86
import XCTest

@testable import Boot

/// An ELF64 executable with one PT_LOAD at `physical` (vaddr in the kernel's high half, like
/// vmlinux) and a PT_NOTE holding `notes` (name, type, descriptor).
func makePVHElf(
  physical: UInt64 = 0x100_0000, code: [UInt8] = [0xF4], notes: [(String, UInt32, [UInt8])]
)
  -> [UInt8]
{
  var noteBytes: [UInt8] = []
  func le(_ v: UInt64, _ n: Int) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
  }
  func pad4(_ b: inout [UInt8]) { while b.count % 4 != 0 { b.append(0) } }
  for (name, type, desc) in notes {
    let n = Array(name.utf8) + [0]
    noteBytes += le(UInt64(n.count), 4) + le(UInt64(desc.count), 4) + le(UInt64(type), 4)
    noteBytes += n
    pad4(&noteBytes)
    noteBytes += desc
    pad4(&noteBytes)
  }
  let phoff = 64
  let codeOff = 0x200
  let noteOff = codeOff + code.count + 16
  var b = [UInt8](repeating: 0, count: noteOff + noteBytes.count)
  func put(_ o: Int, _ v: UInt64, _ n: Int) { b.replaceSubrange(o..<(o + n), with: le(v, n)) }
  b.replaceSubrange(0..<4, with: [0x7F, 0x45, 0x4C, 0x46])
  b[4] = 2
  b[5] = 1
  b[6] = 1
  put(16, 2, 2)  // ET_EXEC
  put(18, 62, 2)  // x86-64
  put(20, 1, 4)
  put(24, 0xFFFF_FFFF_8100_0000, 8)  // virtual entry, as vmlinux has
  put(32, UInt64(phoff), 8)
  put(52, 64, 2)
  put(54, 56, 2)
  put(56, 2, 2)
  // PT_LOAD
  put(phoff, 1, 4)
  put(phoff + 8, UInt64(codeOff), 8)
  put(phoff + 16, 0xFFFF_FFFF_8100_0000, 8)
  put(phoff + 24, physical, 8)
  put(phoff + 32, UInt64(code.count), 8)
  put(phoff + 40, UInt64(code.count) + 0x1000, 8)  // with BSS
  // PT_NOTE
  put(phoff + 56, 4, 4)
  put(phoff + 56 + 8, UInt64(noteOff), 8)
  put(phoff + 56 + 32, UInt64(noteBytes.count), 8)
  put(phoff + 56 + 40, UInt64(noteBytes.count), 8)
  b.replaceSubrange(codeOff..<(codeOff + code.count), with: code)
  b.replaceSubrange(noteOff..<(noteOff + noteBytes.count), with: noteBytes)
  return b
}

final class PVHLoaderTests: XCTestCase {
  let entryNote: (String, UInt32, [UInt8]) = ("Xen", 18, [0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0])

  func testFindsPhys32EntryNoteAmongOthers() throws {
    let elf = try ELFImage(
      makePVHElf(notes: [("Xen", 6, Array("linux\0".utf8)), ("GNU", 18, [1, 2, 3, 4]), entryNote]))
    XCTAssertEqual(PVHLoader.entryPoint(elf), 0x100_0000)
    XCTAssertNil(PVHLoader.entryPoint(try ELFImage(makePVHElf(notes: [("Xen", 6, [0])]))))
    // A descriptor shorter than 4 bytes is not an entry point.
    XCTAssertNil(PVHLoader.entryPoint(try ELFImage(makePVHElf(notes: [("Xen", 18, [1, 2])]))))
  }

  func testRefusesELFWithoutPVHNote() throws {
    let mem = try GuestMemory(size: 64 << 20)
    XCTAssertThrowsError(
      try PVHLoader.load(makePVHElf(notes: [("Xen", 6, [0])]), commandLine: "", into: mem)
    ) { e in
      XCTAssertTrue("\(e)".contains("PHYS32_ENTRY"), "\(e)")
    }
  }

  func testWritesStartInfoAndEntersFlat32() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let acpi = try ACPITables.install(ACPIConfig(), into: mem)
    let initrd = [UInt8](repeating: 0x5A, count: 12345)
    let boot = try PVHLoader.load(
      makePVHElf(notes: [entryNote]), commandLine: "console=ttyS0", initrd: initrd,
      rsdp: acpi.rsdp, into: mem)
    XCTAssertEqual(boot.format, .linuxPVH)
    let s = boot.initialState
    XCTAssertEqual(s.general.rip, 0x100_0000)
    XCTAssertEqual(s.general.rbx, LinuxBootLayout.zeroPage)
    XCTAssertEqual(s.special.cr0 & CR0.pe, CR0.pe)
    XCTAssertEqual(s.special.cr0 & CR0.pg, 0)
    XCTAssertEqual(s.special.cr4, 0)
    XCTAssertEqual(s.special.efer, 0)
    XCTAssertTrue(s.special.cs.db)
    XCTAssertFalse(s.special.cs.l)
    XCTAssertEqual(s.special.cs.base, 0)
    XCTAssertEqual(s.special.cs.limit, 0xFFFF_FFFF)
    XCTAssertEqual(s.special.ds.limit, 0xFFFF_FFFF)
    XCTAssertEqual(s.general.rflags & RFLAGS.if, 0)
    XCTAssertEqual(try mem.read(GuestPhysicalAddress(0x100_0000), as: UInt8.self), 0xF4)

    // hvm_start_info, offsets from xen/include/public/arch-x86/hvm/start_info.h.
    let si = LinuxBootLayout.zeroPage
    func u32(_ a: UInt64) throws -> UInt32 { try mem.read(GuestPhysicalAddress(a)) }
    func u64(_ a: UInt64) throws -> UInt64 { try mem.read(GuestPhysicalAddress(a)) }
    XCTAssertEqual(try u32(si + 0x00), 0x336E_C578)
    XCTAssertEqual(try u32(si + 0x04), 1)
    XCTAssertEqual(try u32(si + 0x0C), 1, "nr_modules")
    let cmd = try u64(si + 0x18)
    XCTAssertEqual(
      try mem.readBytes(GuestPhysicalAddress(cmd), count: 14), Array("console=ttyS0\0".utf8))
    XCTAssertEqual(try u64(si + 0x20), acpi.rsdp)
    let mod = try u64(si + 0x10)
    let rd = try u64(mod)
    XCTAssertEqual(try u64(mod + 8), 12345)
    XCTAssertEqual(rd % 4096, 0)
    XCTAssertGreaterThanOrEqual(rd, 0x100_1001)
    XCTAssertEqual(try mem.readBytes(GuestPhysicalAddress(rd), count: 12345), initrd)
    let map = MemoryMap.pc(for: mem)
    let mm = try u64(si + 0x28)
    XCTAssertEqual(try u32(si + 0x30), UInt32(map.count))
    for (i, e) in map.enumerated() {
      let o = mm + UInt64(24 * i)
      XCTAssertEqual(try u64(o), e.base)
      XCTAssertEqual(try u64(o + 8), e.length)
      XCTAssertEqual(try u32(o + 16), e.kind.rawValue)
    }
  }

  func testPVHRefusesOversizedInputs() throws {
    let mem = try GuestMemory(size: 32 << 20)
    let elf = makePVHElf(notes: [entryNote])
    XCTAssertThrowsError(
      try PVHLoader.load(elf, commandLine: String(repeating: "y", count: 3000), into: mem))
    XCTAssertThrowsError(
      try PVHLoader.load(
        elf, commandLine: "", initrd: [UInt8](repeating: 0, count: 20 << 20), into: mem)
    ) { e in
      XCTAssertTrue("\(e)".contains("initrd"), "\(e)")
    }
    // Segment placed beyond RAM.
    XCTAssertThrowsError(
      try PVHLoader.load(
        makePVHElf(physical: 0x400_0000, notes: [entryNote]), commandLine: "", into: mem))
  }

  func testRealDebianVmlinux() throws {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip(
        "Debian guest not in \(LinuxGuestImages.defaultCacheDirectory); run `swiftvmm guest fetch-linux`"
      )
    }
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: g.vmlinux)))
    let elf = try ELFImage(bytes)
    let entry = try XCTUnwrap(PVHLoader.entryPoint(elf))
    print("Debian \(g.kernelVersion) vmlinux: PVH entry 0x\(String(entry, radix: 16))")
    let mem = try GuestMemory(size: 256 << 20)
    let acpi = try ACPITables.install(ACPIConfig(), into: mem)
    let boot = try PVHLoader.load(
      bytes, commandLine: "console=ttyS0", initrd: [1, 2, 3], rsdp: acpi.rsdp, into: mem)
    XCTAssertEqual(boot.initialState.general.rip, UInt64(entry))
    XCTAssertGreaterThan(boot.imageEnd, 0x300_0000)
  }
}
