import Foundation
import TestSupport
import XCTest

/// gdb reads and writes guest-virtual memory through 32-bit and PAE page tables:
/// a flat 32-bit guest maps VA 0x40000000 to PA 0x300000 (4 KiB page) and its
/// code through a large page, turns paging on and stops at a hardware breakpoint.
/// gdb reads the marker through the mapping and writes a word the guest then
/// reads back and exits with (isa-debug-exit: status = value * 2 + 1).
extension GDBTests {
  /// `mov dword [addr], value`
  fileprivate func store(_ addr: UInt32, _ value: UInt32) -> [UInt8] {
    [0xC7, 0x05] + le(addr) + le(value)
  }
  fileprivate func le(_ v: UInt32) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) }
  }

  /// The guest image and the address of its breakpoint (paging on).
  fileprivate func legacyGuest(pae: Bool) -> (image: [UInt8], breakAt: UInt32) {
    var code: [UInt8] = []
    let cr3: UInt32
    if pae {
      // PDPT at 0x202000: PDPTE0 -> PD 0x203000 (2 MiB page at 0), PDPTE1 -> PD 0x204000.
      code += store(0x20_2000, 0x20_3001) + store(0x20_2008, 0x20_4001)
      code += store(0x20_3000, 0x83) + store(0x20_4000, 0x20_5003) + store(0x20_5000, 0x30_0003)
      cr3 = 0x20_2000
    } else {
      // PD at 0x200000: PDE0 a 4 MiB page at 0 (CR4.PSE), PDE 256 -> PT 0x201000.
      code += store(0x20_0000, 0x83) + store(0x20_0400, 0x20_1003) + store(0x20_1000, 0x30_0003)
      cr3 = 0x20_0000
    }
    code += store(0x30_0000, 0xCAFE_F00D)
    code += [0xB8] + le(cr3) + [0x0F, 0x22, 0xD8]  // mov eax, cr3; mov cr3, eax
    code += [0x0F, 0x20, 0xE0, 0x83, 0xC8, pae ? 0x20 : 0x10, 0x0F, 0x22, 0xE0]  // CR4.PAE / PSE
    code += [0x0F, 0x20, 0xC0, 0x0D] + le(0x8000_0000) + [0x0F, 0x22, 0xC0]  // CR0.PG
    let bp = FlatMultiboot.loadAddress + 32 + UInt32(code.count)
    code += [0x90]  // the breakpoint
    code += [0xA1] + le(0x4000_0004)  // mov eax, [0x40000004]
    code += [0xE6, 0xF4, 0xF4]  // out 0xf4, al; hlt
    return (FlatMultiboot.image(code: code), bp)
  }

  fileprivate func checkLegacyPaging(pae: Bool, engine: String) throws {
    let (image, bp) = legacyGuest(pae: pae)
    let path = NSTemporaryDirectory() + "gdb-legacy-paging-\(pae ? "pae" : "32")-\(getpid()).img"
    try Data(image).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let r = try session(
      engine: engine, kernel: path,
      commands: [
        "hbreak *0x" + String(bp, radix: 16), "continue", "print/x $cr0", "x/wx 0x40000000",
        "x/bx 0x" + String(bp, radix: 16), "set {int}0x40000004 = 5", "continue",
      ])
    XCTAssertTrue(r.gdb.contains("$1 = 0x8"), "stopped with paging on\n\(r.gdb)")
    XCTAssertTrue(r.gdb.contains("0x40000000:\t0xcafef00d"), "read through the tables\n\(r.gdb)")
    XCTAssertTrue(
      r.gdb.contains("0x\(String(bp, radix: 16)):\t0x90"), "read through the large page\n\(r.gdb)")
    XCTAssertEqual(r.status, 11, "the guest read gdb's write\n\(r.gdb)\n\(r.vm)")
  }

  func testMemoryThroughThirtyTwoBitPaging() throws { try checkLegacyPaging(pae: false, engine: "interpreter") }
  func testMemoryThroughPAEPaging() throws { try checkLegacyPaging(pae: true, engine: "interpreter") }
  func testMemoryThroughPAEPagingOnTranslator() throws { try checkLegacyPaging(pae: true, engine: "translator") }
}
