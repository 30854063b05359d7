import Engine
import XCTest

@testable import Interpreter

/// AMD's HWCR (MSR 0xC0010015): Xen reads it and sets FFDIS on a family 0Fh CPU (ours, as
/// QEMU's qemu64). Bits with no effect in an emulator are kept; others #GP.
extension UnitTests {
  func skipUnlessAMD() throws {
    try XCTSkipIf(
      CPUIDPolicy.default.lookup(leaf: 0, subleaf: 0).ebx != 0x6874_7541,
      "the default policy is not AuthenticAMD")
  }

  func testHWCRKeepsFlushFilterDisable() throws {
    try skipUnlessAMD()
    // mov ecx,HWCR ; rdmsr ; or eax,0x40 ; wrmsr ; xor eax,eax ; xor edx,edx ; rdmsr ; hlt
    let m = try machine64([
      0xB9, 0x15, 0x00, 0x01, 0xC0, 0x0F, 0x32, 0x0D, 0x40, 0, 0, 0, 0x0F, 0x30, 0x31, 0xC0,
      0x31, 0xD2, 0x0F, 0x32, 0xF4,
    ])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 0x40)
    XCTAssertEqual(g.rdx, 0)
  }

  /// SSEDIS (bit 15) would turn SSE off, which the interpreter does not model: #GP.
  func testHWCRRefusesBitsWithUnmodelledEffects() throws {
    try skipUnlessAMD()
    // mov ecx,HWCR ; xor edx,edx ; mov eax,0x8000 ; wrmsr ; mov eax,42 ; hlt
    let m = try machine64([
      0xB9, 0x15, 0x00, 0x01, 0xC0, 0x31, 0xD2, 0xB8, 0x00, 0x80, 0, 0, 0x0F, 0x30, 0xB8, 42, 0, 0,
      0, 0xF4,
    ])
    XCTAssertEqual(try runToHalt(m).rax, 13)
  }

  /// SMMLOCK stays set once written.
  func testHWCRSMMLockSticks() throws {
    try skipUnlessAMD()
    // mov ecx,HWCR ; xor edx,edx ; mov eax,1 ; wrmsr ; xor eax,eax ; wrmsr ; rdmsr ; hlt
    let m = try machine64([
      0xB9, 0x15, 0x00, 0x01, 0xC0, 0x31, 0xD2, 0xB8, 1, 0, 0, 0, 0x0F, 0x30, 0x31, 0xC0, 0x0F,
      0x30, 0x0F, 0x32, 0xF4,
    ])
    XCTAssertEqual(try runToHalt(m).rax, 1)
  }
}
