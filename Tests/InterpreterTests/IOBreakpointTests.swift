import Engine
import XCTest

@testable import Interpreter

/// DR7 I/O breakpoints (R/W = 10): a #DB trap after the IN, OUT, INS or OUTS that
/// touched a covered port, DR6.Bn set (DebugRegisters.swift `drNoteIO`).
extension UnitTests {
  /// mov eax,port ; mov dr0,rax ; mov eax,dr7 ; mov dr7,rax (16 bytes), then `code`.
  func ioBreakpointMachine(port: UInt32, dr7: UInt32, _ code: [UInt8]) throws -> TestMachine {
    try machine64(
      [0xB8] + withUnsafeBytes(of: port.littleEndian, Array.init) + [0x0F, 0x23, 0xC0, 0xB8]
        + withUnsafeBytes(of: dr7.littleEndian, Array.init) + [0x0F, 0x23, 0xF8] + code)
  }

  func out(_ port: UInt16, _ value: UInt32) -> VMExit {
    .portIO(PortIOAccess(port: port, size: 1, direction: .out, value: value))
  }

  func testIOBreakpointTrapsAfterOut() throws {
    // L0, R/W0 = 10, LEN0 = 1 byte on port 0x80. mov al,7 ; out 0x80,al ; nop ; hlt
    let m = try ioBreakpointMachine(port: 0x80, dr7: 0x2_0001, [0xB0, 7, 0xE6, 0x80, 0x90, 0xF4])
    XCTAssertEqual(try m.cpu.run(), out(0x80, 7), "the OUT reaches the device")
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 20, "a trap: RIP follows the OUT")
    XCTAssertEqual(m.cpu.dr[6] & 0xF, 1, "DR6.B0")
  }

  func testIOBreakpointTrapsAfterInOfACoveredPort() throws {
    // LEN0 = 2 bytes: ports 0x80-0x81. in al,0x81 ; nop ; hlt
    let m = try ioBreakpointMachine(port: 0x80, dr7: 0x6_0001, [0xE4, 0x81, 0x90, 0xF4])
    XCTAssertEqual(try m.cpu.run(), .portIO(PortIOAccess(port: 0x81, size: 1, direction: .in)))
    m.cpu.completeIO(value: 0x42)
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 18, "after the IN completed")
    XCTAssertEqual(m.cpu.dr[6] & 0xF, 1, "DR6.B0")
  }

  func testIOBreakpointIgnoresOtherPorts() throws {
    // Ports 0x80-0x81 covered. mov al,7 ; out 0x82,al ; hlt
    let m = try ioBreakpointMachine(port: 0x80, dr7: 0x6_0001, [0xB0, 7, 0xE6, 0x82, 0xF4])
    XCTAssertEqual(try m.cpu.run(), out(0x82, 7))
    XCTAssertEqual(try runToHalt(m).rax, 0x6_0007, "no #DB (its handler would leave 1)")
    XCTAssertEqual(m.cpu.dr[6] & 0xF, 0)
  }

  /// REP OUTSB traps after the element that hit, with RIP still at the REP and RCX counted.
  func testIOBreakpointTrapsAfterARepOutsElement() throws {
    // mov esi,0x30000 ; mov ecx,2 ; mov edx,0x80 ; rep outsb ; hlt
    let m = try ioBreakpointMachine(
      port: 0x80, dr7: 0x2_0001,
      [
        0xBE, 0x00, 0x00, 0x03, 0x00, 0xB9, 2, 0, 0, 0, 0xBA, 0x80, 0, 0, 0, 0xF3, 0x6E, 0xF4,
      ])
    try m.load([0x61, 0x62], at: 0x30000)
    XCTAssertEqual(try m.cpu.run(), out(0x80, 0x61))
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 31, "the REP resumes after the handler")
    XCTAssertEqual(try regs(m).rcx, 1)
    XCTAssertEqual(m.cpu.dr[6] & 0xF, 1)
  }
}
