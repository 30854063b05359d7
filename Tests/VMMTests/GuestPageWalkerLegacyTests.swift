import Engine
import Memory
import X86
import XCTest

@testable import VMM

/// The VMM's walker in 32-bit and PAE paging: translations (4 KiB, 4 MiB with
/// PSE-36, 2 MiB), faults with their error codes, and A/D updates in 4-byte entries.
final class GuestPageWalkerLegacyTests: XCTestCase {
  let cr0 = CR0.pe | CR0.pg | CR0.wp

  func u32(_ m: GuestMemory, _ a: UInt64, _ v: UInt32) throws {
    try m.write(GuestPhysicalAddress(a), value: v)
  }
  func u64(_ m: GuestMemory, _ a: UInt64, _ v: UInt64) throws {
    try m.write(GuestPhysicalAddress(a), value: v)
  }
  func gpa(_ r: GuestPageWalker.Result) -> UInt64? {
    if case .ok(let l) = r { return l.gpa }
    return nil
  }
  func code(_ r: GuestPageWalker.Result) -> UInt32? {
    if case .fault(let c) = r { return c }
    return nil
  }

  func testThirtyTwoBitPaging() throws {
    let m = try GuestMemory(size: 16 << 20)
    let w = GuestPageWalker(memory: m, has1G: false)
    // PD at 0x10000: PDE 1 -> PT 0x11000 (supervisor); PDE 2 a 4 MiB page at
    // 0x5_0080_0000 (PSE-36: bits 39:32 in PDE bits 20:13); PDE 3 with reserved bit 21.
    try u32(m, 0x10000 + 4, 0x11000 | 0x3)
    try u32(m, 0x10000 + 8, 0x0080_0000 | (5 << 13) | 0x87)
    try u32(m, 0x10000 + 12, 0x0080_0000 | (1 << 21) | 0x87)
    try u32(m, 0x11000 + 4 * 5, 0x0012_3000 | 0x1)  // PTE 5: present, read-only
    let regs = PagingRegisters(cr0: cr0, cr3: 0x10000, cr4: CR4.pse, efer: 0)

    let r = w.walk(0x0040_5ABC, regs: regs, write: false, user: false, fetch: false)
    guard case .ok(let leaf) = r else { return XCTFail("\(r)") }
    XCTAssertEqual(leaf.gpa, 0x12_3000)
    XCTAssertEqual(leaf.level, 1)
    XCTAssertEqual(leaf.steps.map(\.entryGPA), [0x10004, 0x11014])
    let pte: UInt32 = try m.read(GuestPhysicalAddress(0x11014))
    XCTAssertEqual(pte, 0x12_3000 | 0x21, "A set in the 4-byte entry")
    let next: UInt32 = try m.read(GuestPhysicalAddress(0x11018))
    XCTAssertEqual(next, 0, "the next entry is untouched")

    // The 4 MiB page; the high GVA bits above 32 are ignored.
    XCTAssertEqual(
      gpa(w.walk(0x1_0092_3456, regs: regs, write: true, user: true, fetch: false)),
      0x5_0092_3000)
    let pde: UInt32 = try m.read(GuestPhysicalAddress(0x10008))
    XCTAssertEqual(pde & 0x60, 0x60, "A and D set by a write")
    // Without CR4.PSE the PS bit is ignored: PDE 2 is a page table at 0x800000.
    var nopse = regs
    nopse.cr4 = 0
    XCTAssertEqual(
      code(w.walk(0x0080_0000, regs: nopse, write: false, user: false, fetch: false)), 0)

    let p = PageFaultError.present
    XCTAssertEqual(code(w.walk(0x0, regs: regs, write: false, user: false, fetch: false)), 0)
    XCTAssertEqual(
      code(w.walk(0x0040_5000, regs: regs, write: false, user: true, fetch: false)),
      p | PageFaultError.user, "supervisor page")
    XCTAssertEqual(
      code(w.walk(0x0040_5000, regs: regs, write: true, user: false, fetch: false)),
      p | PageFaultError.write, "read-only with CR0.WP")
    var nowp = regs
    nowp.cr0 &= ~CR0.wp
    XCTAssertEqual(
      gpa(w.walk(0x0040_5000, regs: nowp, write: true, user: false, fetch: false)), 0x12_3000)
    XCTAssertEqual(
      code(w.walk(0x00C0_0000, regs: regs, write: false, user: false, fetch: false)),
      p | PageFaultError.reserved, "PSE-36 bit 21")
  }

  func testPAEPaging() throws {
    let m = try GuestMemory(size: 16 << 20)
    let w = GuestPageWalker(memory: m, has1G: false)
    // PDPT at 0x10020 (32-byte aligned): PDPTE 1 -> PD 0x11000; PDPTE 2 has a reserved bit.
    try u64(m, 0x10020 + 8, 0x11000 | 0x1)
    try u64(m, 0x10020 + 16, 0x12000 | 0x1 | 0x2)
    try u64(m, 0x11000 + 8 * 3, 0x13000 | 0x7)  // PDE 3 -> PT, user, writable
    try u64(m, 0x11000 + 8 * 4, 0x0060_0000 | 0x87 | PTE.nx)  // 2 MiB page, NX
    try u64(m, 0x13000 + 8 * 7, 0x2_0000_5000 | 0x7)  // PTE 7 above 4 GiB
    let regs = PagingRegisters(
      cr0: cr0, cr3: 0x10020, cr4: CR4.pae, efer: EFER.nxe)
    let va: UInt64 = 0x4000_0000 | 3 << 21 | 7 << 12 | 0x123
    let r = w.walk(va, regs: regs, write: true, user: true, fetch: false)
    guard case .ok(let leaf) = r else { return XCTFail("\(r)") }
    XCTAssertEqual(leaf.gpa, 0x2_0000_5000)
    XCTAssertEqual(leaf.steps.map(\.level), [3, 2, 1])
    XCTAssertEqual(leaf.steps.map(\.entryGPA), [0x10028, 0x11018, 0x13038])
    let pte: UInt64 = try m.read(GuestPhysicalAddress(0x13038))
    XCTAssertEqual(pte & 0x60, 0x60)

    let big: UInt64 = 0x4000_0000 | 4 << 21 | 0x1_2345
    XCTAssertEqual(
      gpa(w.walk(big, regs: regs, write: false, user: false, fetch: false)), 0x61_2000)
    XCTAssertEqual(
      code(w.walk(big, regs: regs, write: false, user: false, fetch: true)),
      PageFaultError.present | PageFaultError.fetch, "NX 2 MiB page")
    XCTAssertEqual(
      code(w.walk(0x8000_0000, regs: regs, write: false, user: false, fetch: false)),
      PageFaultError.present | PageFaultError.reserved, "PDPTE with R/W (reserved) set")
    XCTAssertEqual(
      code(w.walk(0x0, regs: regs, write: false, user: false, fetch: false)), 0,
      "PDPTE 0 not present")
    // A walk into non-RAM stops, as the interpreter's does.
    let far = PagingRegisters(cr0: cr0, cr3: 0xFFFF_F000, cr4: 0, efer: 0)
    guard case .machineCheck = w.walk(0, regs: far, write: false, user: false, fetch: false)
    else { return XCTFail("walk outside RAM") }
  }
}
