import XCTest

@testable import Interpreter

/// CPU bugs kvm-unit-tests found (docs/KVM-UNIT-TESTS.md), one regression test each.
extension UnitTests {
  /// realmode's "mov dr with mod bits": MOV to/from CR/DR ignore ModRM.mod, so a
  /// mod=00 byte names a register and no SIB or displacement follows it.
  func testMOVDebugRegisterIgnoresModBits() throws {
    // mov ebx,0xaced ; mov dr0,rbx ; mov rbp,dr0 with mod=00 (0F 21 05: rm=5 would be
    // RIP+disp32 as memory) ; mov r8,dr0 with mod=01 (41 0F 21 40) ; hlt
    let m = try machine64([
      0xBB, 0xED, 0xAC, 0, 0, 0x0F, 0x23, 0xC3, 0x0F, 0x21, 0x05, 0x41, 0x0F, 0x21, 0x40, 0xF4,
    ])
    let r = try runToHalt(m)
    XCTAssertEqual(r.rbp, 0xACED)
    XCTAssertEqual(r.r8, 0xACED)
  }

  func testMOVControlRegisterIgnoresModBits() throws {
    // mov rax,cr0 with mod=00 and rm=4 (0F 20 04: a SIB byte would follow as memory) ; hlt
    let m = try machine64([0x0F, 0x20, 0x04, 0xF4])
    let r = try runToHalt(m)
    XCTAssertEqual(r.rsp, try m.cpu.getState().special.cr0)
  }
}
