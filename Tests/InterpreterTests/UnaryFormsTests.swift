import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

extension UnitTests {
  /// NEG of a read-only location faults before it changes the flags (the decoded form
  /// writes first; group3 used to set the flags before its faulting write). Interpreter
  /// and translator alike.
  func testNegIntoReadOnlyPageLeavesTheFlags() throws {
    let code: [UInt8] = [
      0xBF, 0, 0, 0, 0x01,  // mov edi,0x1000000
      0x31, 0xC0,  // xor eax,eax (ZF=1, CF=0)
      0xF7, 0x1F,  // neg dword [rdi] (the value is 5: CF=1, ZF=0 if it ran)
      0xF4,
    ]
    for translate in [false, true] {
      let m = try machine64(code)
      if translate { try m.cpu.enableTranslation() }
      try m.memory.write(GuestPhysicalAddress(0x100_0000), value: UInt32(5))
      try setPDE(m, 0x100_0000, 0x100_0000 | 0x81)  // present, read-only 2 MiB page
      _ = try expectException(m, 14, hasCode: true)
      let f = try m.cpu.getState().general.rflags
      XCTAssertEqual(f & (RFLAGS.cf | RFLAGS.zf), RFLAGS.zf, "translate \(translate)")
      XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x100_0000), as: UInt32.self), 5)
    }
  }
}
