import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// SSE/SSE2/MMX unit tests (the differential tester covers every form against the host).
final class SSETests: XCTestCase {
  static let code: UInt64 = 0x10_0000
  static let data: UInt64 = 0x20_0000

  func machine(_ code: [UInt8], osfxsr: Bool = true) throws -> TestMachine {
    let m = try TestMachine(ramMiB: 64)
    try m.load(code, at: SSETests.code)
    try m.setLongMode(rip: SSETests.code)
    var s = try m.cpu.getState()
    if osfxsr { s.special.cr4 |= CR4.osfxsr | CR4.osxmmexcpt }
    try m.cpu.setState(s)
    return m
  }

  func put(_ m: TestMachine, _ a: UInt64, _ v: UInt64) throws {
    try m.memory.write(GuestPhysicalAddress(a), value: v)
  }

  func get(_ m: TestMachine, _ a: UInt64) throws -> UInt64 {
    try m.memory.read(GuestPhysicalAddress(a), as: UInt64.self)
  }

  func run(_ m: TestMachine) throws -> GeneralRegisters {
    XCTAssertEqual(try m.cpu.run(), .halt)
    return try m.cpu.getState().general
  }

  let movRdiData: [UInt8] = [0x48, 0xC7, 0xC7, 0x00, 0x00, 0x20, 0x00]  // mov rdi, 0x200000

  /// The busybox/glibc strlen idiom: pxor, movdqu, pcmpeqb, pmovmskb, bsf.
  func testStrlenIdiom() throws {
    let m = try machine(
      movRdiData + [
        0x66, 0x0F, 0xEF, 0xC0,  // pxor xmm0, xmm0
        0xF3, 0x0F, 0x6F, 0x0F,  // movdqu xmm1, [rdi]
        0x66, 0x0F, 0x74, 0xC8,  // pcmpeqb xmm1, xmm0
        0x66, 0x0F, 0xD7, 0xC1,  // pmovmskb eax, xmm1
        0x0F, 0xBC, 0xC0,  // bsf eax, eax
        0xF4,
      ])
    try m.memory.write(GuestPhysicalAddress(SSETests.data), bytes: Array("hello\0world12345".utf8))
    XCTAssertEqual(try run(m).rax, 5)
  }

  /// LDMXCSR with round-up, DIVSD, MOVQ r64, STMXCSR (precision flag set).
  func testRoundingModeAndFlags() throws {
    let m = try machine(
      movRdiData + [
        0x0F, 0xAE, 0x17,  // ldmxcsr [rdi]
        0xF2, 0x0F, 0x10, 0x47, 0x08,  // movsd xmm0, [rdi+8]
        0xF2, 0x0F, 0x10, 0x4F, 0x10,  // movsd xmm1, [rdi+16]
        0xF2, 0x0F, 0x5E, 0xC1,  // divsd xmm0, xmm1
        0x66, 0x48, 0x0F, 0x7E, 0xC0,  // movq rax, xmm0
        0x0F, 0xAE, 0x5F, 0x18,  // stmxcsr [rdi+24]
        0xF4,
      ])
    try put(m, SSETests.data, 0x5F80)  // round up
    try put(m, SSETests.data + 8, (2.0 as Double).bitPattern)
    try put(m, SSETests.data + 16, (3.0 as Double).bitPattern)
    XCTAssertEqual(try run(m).rax, 0x3FE5_5555_5555_5556)
    XCTAssertEqual(try get(m, SSETests.data + 24) & 0xFFFF_FFFF, 0x5FA0)
  }

  /// Invalid conversions give the integer indefinite (and never trap the host).
  func testIndefiniteConversions() throws {
    let m = try machine(
      movRdiData + [
        0xF2, 0x0F, 0x10, 0x07,  // movsd xmm0, [rdi]
        0xF2, 0x0F, 0x2C, 0xC0,  // cvttsd2si eax, xmm0
        0xF2, 0x0F, 0x10, 0x4F, 0x08,  // movsd xmm1, [rdi+8]
        0xF2, 0x48, 0x0F, 0x2C, 0xD9,  // cvttsd2si rbx, xmm1
        0xF3, 0x48, 0x0F, 0x2A, 0xD3,  // cvtsi2ss xmm2, rbx
        0x66, 0x0F, 0x7E, 0xD1,  // movd ecx, xmm2
        0xF4,
      ])
    try put(m, SSETests.data, 0x7FF8_0000_0000_0000)
    try put(m, SSETests.data + 8, (1e30 as Double).bitPattern)
    let g = try run(m)
    XCTAssertEqual(g.rax, 0x8000_0000)
    XCTAssertEqual(g.rbx, 0x8000_0000_0000_0000)
    XCTAssertEqual(g.rcx, 0xDF00_0000)  // -2^63 as float
  }

  /// MMX: MOVQ, PADDB (wrapping), MOVQ r64, EMMS; the transition sets TOP 0 and all tags.
  func testMMX() throws {
    let m = try machine(
      movRdiData + [
        0x0F, 0x6F, 0x07,  // movq mm0, [rdi]
        0x0F, 0xFC, 0xC0,  // paddb mm0, mm0
        0x48, 0x0F, 0x7E, 0xC0,  // movq rax, mm0
        0xF4,
      ])
    try put(m, SSETests.data, 0x8101_FF7F_0102_0304)
    XCTAssertEqual(try run(m).rax, 0x0202_FEFE_0204_0608)
    let fx = m.cpu.fxImage()
    XCTAssertEqual(fx[4], 0xFF)  // abridged tags: all valid
    XCTAssertEqual(fx[40], 0xFF)  // MM0's exponent field is all ones
    XCTAssertEqual(fx[41], 0xFF)
  }

  /// Without CR4.OSFXSR, SSE instructions raise #UD (no IDT here: not a HLT).
  func testUDWithoutOSFXSR() throws {
    let m = try machine([0x66, 0x0F, 0xEF, 0xC0, 0xF4], osfxsr: false)
    XCTAssertNotEqual(try m.cpu.run(), .halt)
  }

  /// MOVAPS needs 16-byte alignment (#GP); MOVUPS does not.
  func testAlignment() throws {
    let ok = try machine(
      movRdiData + [0x0F, 0x10, 0x47, 0x01, 0x66, 0x0F, 0x7E, 0xC0, 0xF4])  // movups; movd eax
    try put(ok, SSETests.data, 0x1122_3344_5566_7788)
    XCTAssertEqual(try run(ok).rax, 0x4455_6677)
    let bad = try machine(movRdiData + [0x0F, 0x28, 0x47, 0x01, 0xF4])  // movaps xmm0, [rdi+1]
    XCTAssertNotEqual(try bad.cpu.run(), .halt)
  }

  /// PSHUFD, PUNPCKLBW, PACKUSWB, PSRLDQ with immediates.
  func testShufflesAndPacks() throws {
    let m = try machine(
      movRdiData + [
        0xF3, 0x0F, 0x6F, 0x07,  // movdqu xmm0, [rdi]
        0x66, 0x0F, 0x70, 0xC8, 0x1B,  // pshufd xmm1, xmm0, 0x1b (reverse dwords)
        0x66, 0x48, 0x0F, 0x7E, 0xC8,  // movq rax, xmm1
        0x66, 0x0F, 0x73, 0xD8, 0x04,  // psrldq xmm0, 4
        0x66, 0x48, 0x0F, 0x7E, 0xC3,  // movq rbx, xmm0
        0xF4,
      ])
    try put(m, SSETests.data, 0x4444_4444_3333_3333)
    try put(m, SSETests.data + 8, 0x2222_2222_1111_1111)
    let g = try run(m)
    XCTAssertEqual(g.rax, 0x1111_1111_2222_2222)
    XCTAssertEqual(g.rbx, 0x1111_1111_4444_4444)
  }
}
