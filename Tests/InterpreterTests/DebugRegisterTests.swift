import Memory
import XCTest

@testable import Interpreter

/// The guest's DR0-DR3/DR7 breakpoints, DR7.GD and MOV SS blocking (kvm-unit-tests' debug).
extension UnitTests {
  static let dr6Fixed: UInt64 = 0xFFFF_0FF0

  func testInstructionBreakpointFaultsBeforeTheInstruction() throws {
    // mov eax,codeBase+17 ; mov dr0,rax ; mov eax,1 (L0, execute) ; mov dr7,rax ;
    // nop ; nop (breakpoint) ; hlt
    let target = UInt32(UnitTests.codeBase) + 17
    let m = try machine64(
      [0xB8] + withUnsafeBytes(of: target.littleEndian, Array.init) + [
        0x0F, 0x23, 0xC0, 0xB8, 1, 0, 0, 0, 0x0F, 0x23, 0xF8, 0x90, 0x90, 0xF4,
      ])
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UInt64(target), "a fault: RIP is the breakpoint's instruction")
    XCTAssertEqual(m.cpu.dr[6] & 0xF, 1, "DR6.B0")
  }

  func testDataBreakpointTrapsAfterTheWrite() throws {
    // mov eax,0x30000 ; mov dr1,rax ; mov eax,0x00D00004 (L1, write, 4 bytes) ; mov dr7,rax ;
    // mov dword [0x30000],5 ; nop ; hlt
    let m = try machine64([
      0xB8, 0x00, 0x00, 0x03, 0x00, 0x0F, 0x23, 0xC8, 0xB8, 0x04, 0x00, 0xD0, 0x00, 0x0F, 0x23,
      0xF8, 0xC7, 0x04, 0x25, 0x00, 0x00, 0x03, 0x00, 0x05, 0, 0, 0, 0x90, 0xF4,
    ])
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 27, "a trap: RIP follows the write")
    XCTAssertEqual(m.cpu.dr[6] & 0xF, 2, "DR6.B1")
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x30000)) as UInt32, 5)
  }

  func testReadDoesNotHitAWriteBreakpoint() throws {
    // Write-only breakpoint on 0x30000; mov eax,[0x30000] does not trap.
    // mov eax,0x30000 ; mov dr1,rax ; mov eax,0x00D00004 ; mov dr7,rax ;
    // mov eax,[0x30000] ; hlt
    let m = try machine64([
      0xB8, 0x00, 0x00, 0x03, 0x00, 0x0F, 0x23, 0xC8, 0xB8, 0x04, 0x00, 0xD0, 0x00, 0x0F, 0x23,
      0xF8, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x03, 0x00, 0xF4,
    ])
    XCTAssertEqual(try runToHalt(m).rax, 0, "no #DB (its handler would leave 1)")
  }

  func testMOVSSBlocksTheSingleStepTrapForOneInstruction() throws {
    // pushfq ; or qword [rsp],0x100 ; mov eax,0x10 ; popfq (TF) ; mov ss,ax ; nop ; nop ; hlt
    // The step trap after MOV SS is suppressed: the first #DB follows the first NOP.
    let m = try machine64([
      0x9C, 0x48, 0x81, 0x0C, 0x24, 0x00, 0x01, 0x00, 0x00, 0xB8, 0x10, 0, 0, 0, 0x9D, 0x8E,
      0xD0, 0x90, 0x90, 0xF4,
    ])
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 18)
    XCTAssertEqual(m.cpu.dr[6] & (1 << 14), 1 << 14, "DR6.BS")
  }

  func testGeneralDetectFaultsOnMOVDR() throws {
    // mov eax,0x2000 (GD) ; mov dr7,rax ; mov rax,dr6 ; hlt
    let m = try machine64([0xB8, 0x00, 0x20, 0, 0, 0x0F, 0x23, 0xF8, 0x0F, 0x21, 0xF0, 0xF4])
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 8, "a fault on the MOV from DR6")
    XCTAssertEqual(m.cpu.dr[6] & (1 << 13), 1 << 13, "DR6.BD")
    XCTAssertEqual(m.cpu.dr[7] & (1 << 13), 0, "GD cleared for the handler")
  }
}
