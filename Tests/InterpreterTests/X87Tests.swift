import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// x87 unit tests (80-bit arithmetic runs on the host x87 with the guest control word).
final class X87Tests: XCTestCase {
  func machine(_ code: [UInt8]) throws -> TestMachine {
    let m = try TestMachine(ramMiB: 64)
    try m.load(code, at: 0x10_0000)
    try m.setLongMode(rip: 0x10_0000)
    return m
  }

  let movRdiData: [UInt8] = [0x48, 0xC7, 0xC7, 0x00, 0x00, 0x20, 0x00]  // mov rdi, 0x200000
  let data: UInt64 = 0x20_0000

  func testConstantsArithmeticAndStore() throws {
    let m = try machine(
      movRdiData + [
        0xD9, 0xE8,  // fld1
        0xD9, 0xEB,  // fldpi
        0xDE, 0xC1,  // faddp st(1), st
        0xDD, 0x1F,  // fstp qword [rdi]
        0xDF, 0xE0,  // fnstsw ax
        0xF4,
      ])
    XCTAssertEqual(try m.cpu.run(), .halt)
    let v = Double(bitPattern: try m.memory.read(GuestPhysicalAddress(data), as: UInt64.self))
    XCTAssertEqual(v, 1.0 + Double.pi, accuracy: 1e-15)
    let g = try m.cpu.getState().general
    XCTAssertEqual(g.rax & 0x3800, 0)  // TOP back to 0
    XCTAssertEqual(m.cpu.fxImage()[4], 0)  // all empty
  }

  /// FISTP follows the rounding control (nearest-even, then down after FLDCW).
  func testIntegerStoreRounding() throws {
    let m = try machine(
      movRdiData + [
        0xDD, 0x07,  // fld qword [rdi]       2.5
        0xDB, 0x5F, 0x08,  // fistp dword [rdi+8]
        0xD9, 0x6F, 0x10,  // fldcw [rdi+16]  (round down)
        0xDD, 0x07,  // fld qword [rdi]
        0xDB, 0x5F, 0x0C,  // fistp dword [rdi+12]
        0xDD, 0x47, 0x18,  // fld qword [rdi+24]  -2.5
        0xDB, 0x5F, 0x14,  // fistp dword [rdi+20]
        0xF4,
      ])
    try m.memory.write(GuestPhysicalAddress(data), value: (2.5 as Double).bitPattern)
    try m.memory.write(GuestPhysicalAddress(data + 16), value: UInt64(0x77F))
    try m.memory.write(GuestPhysicalAddress(data + 24), value: (-2.5 as Double).bitPattern)
    XCTAssertEqual(try m.cpu.run(), .halt)
    let a = try m.memory.read(GuestPhysicalAddress(data + 8), as: UInt64.self)
    let b = try m.memory.read(GuestPhysicalAddress(data + 16), as: UInt64.self)
    XCTAssertEqual(a & 0xFFFF_FFFF, 2)
    XCTAssertEqual(a >> 32, 2)
    XCTAssertEqual(Int32(truncatingIfNeeded: b >> 32), -3)
  }

  /// FCOMPP sets C0 for ST0 < ST1 and pops twice; FUCOMI sets CF.
  func testCompares() throws {
    let m = try machine([
      0xD9, 0xE8,  // fld1
      0xD9, 0xEE,  // fldz      st0 = 0, st1 = 1
      0xDB, 0xE9,  // fucomi st0, st1  → CF
      0xDE, 0xD9,  // fcompp
      0xDF, 0xE0,  // fnstsw ax
      0xF4,
    ])
    XCTAssertEqual(try m.cpu.run(), .halt)
    let g = try m.cpu.getState().general
    XCTAssertEqual(g.rax & 0x4700, 0x0100)
    XCTAssertEqual(g.rax & 0x3800, 0)
    XCTAssertEqual(g.rflags & 0x45, 0x01)
  }

  /// Stack underflow with IE masked gives the indefinite and sets IE|SF.
  func testStackUnderflow() throws {
    let m = try machine(movRdiData + [0xD9, 0xE1, 0xDD, 0x17, 0xDF, 0xE0, 0xF4])  // fabs; fst [rdi]
    XCTAssertEqual(try m.cpu.run(), .halt)
    XCTAssertEqual(
      try m.memory.read(GuestPhysicalAddress(data), as: UInt64.self), 0xFFF8_0000_0000_0000)
    XCTAssertEqual(try m.cpu.getState().general.rax & 0x41, 0x41)
  }

  /// FXSAVE image: ST registers are stored in stack order with TOP in FSW.
  func testFXImageStackOrder() throws {
    let m = try machine([0xD9, 0xE8, 0xD9, 0xEE, 0xF4])  // fld1; fldz
    XCTAssertEqual(try m.cpu.run(), .halt)
    let fx = m.cpu.fxImage()
    XCTAssertEqual((Int(fx[3]) >> 3) & 7, 6)  // TOP = 6
    XCTAssertEqual(fx[4], 0xC0)  // R6, R7 valid
    XCTAssertEqual(fx[32 + 16 + 7], 0x80)  // ST1 = 1.0: integer bit
    XCTAssertEqual(fx[32 + 16 + 9], 0x3F)
  }
}
