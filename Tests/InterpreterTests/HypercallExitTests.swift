import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// VMCALL outside 64-bit mode: only the low halves of the registers count, and
/// the result is written as 32 bits (what KVM does; docs/HYPERCALLS.md section 2).
final class HypercallExitTests: XCTestCase {
  func testVMCALLIn32BitModeReadsAndWritesLowHalves() throws {
    let m = try TestMachine(ramMiB: 16)
    try m.load([0x0F, 0x01, 0xC1, 0xF4], at: 0x10000)  // vmcall ; hlt
    try m.setProtectedMode32(rip: 0x10000)
    var s = try m.cpu.getState()
    s.general.rax = 0xDEAD_0000_0000_0007
    s.general.rbx = 0xBEEF_0000_0000_0001
    try m.cpu.setState(s)
    XCTAssertEqual(try m.cpu.run(), .hypercall(number: 7, arguments: [1, 0, 0, 0]))
    m.cpu.setHypercallResult(UInt64(bitPattern: -38))
    XCTAssertEqual(try m.cpu.run(), .halt)
    XCTAssertEqual(try m.cpu.getState().general.rax, 0xFFFF_FFDA)
  }
}
