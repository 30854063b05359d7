import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// x86-64-v2 instructions on known answers (the differential tester compares
/// every form against the host; these pin the semantics without a host oracle).
final class SSE4Tests: XCTestCase {
  static let code: UInt64 = 0x10_0000
  static let data: UInt64 = 0x20_0000
  let movRdiData: [UInt8] = [0x48, 0xC7, 0xC7, 0x00, 0x00, 0x20, 0x00]  // mov rdi, 0x200000

  func machine(_ code: [UInt8], cpuid: CPUIDPolicy = .default) throws -> TestMachine {
    let m = try TestMachine(ramMiB: 64, cpuid: cpuid)
    try m.load(movRdiData + code, at: SSE4Tests.code)
    try m.setLongMode(rip: SSE4Tests.code)
    var s = try m.cpu.getState()
    s.special.cr4 |= CR4.osfxsr | CR4.osxmmexcpt
    try m.cpu.setState(s)
    return m
  }

  func run(_ m: TestMachine) throws -> GeneralRegisters {
    XCTAssertEqual(try m.cpu.run(), .halt)
    return try m.cpu.getState().general
  }

  /// CRC32 byte by byte over "123456789": the CRC-32C check value.
  func testCRC32CheckValue() throws {
    let m = try machine([
      0xB8, 0xFF, 0xFF, 0xFF, 0xFF,  // mov eax, -1
      0x48, 0xC7, 0xC1, 0x09, 0x00, 0x00, 0x00,  // mov rcx, 9
      0xF2, 0x0F, 0x38, 0xF0, 0x07,  // loop: crc32 eax, byte [rdi]
      0x48, 0xFF, 0xC7,  // inc rdi
      0x48, 0xFF, 0xC9,  // dec rcx
      0x75, 0xF3,  // jnz loop
      0xF7, 0xD0,  // not eax
      0xF4,
    ])
    try m.memory.write(GuestPhysicalAddress(SSE4Tests.data), bytes: Array("123456789".utf8))
    XCTAssertEqual(try run(m).rax, 0xE306_9283)
  }

  /// PCMPISTRI, equal ordered: the index of a substring.
  func testPcmpistriFindsSubstring() throws {
    let m = try machine([
      0xF3, 0x0F, 0x6F, 0x4F, 0x10,  // movdqu xmm1, [rdi+16] (needle)
      0x66, 0x0F, 0x3A, 0x63, 0x0F, 0x0C,  // pcmpistri xmm1, [rdi], 0x0C
      0x89, 0xC8,  // mov eax, ecx
      0xF4,
    ])
    try m.memory.write(
      GuestPhysicalAddress(SSE4Tests.data),
      bytes: Array("hello world, wor".utf8) + Array("wor\0".utf8))
    let r = try run(m)
    XCTAssertEqual(r.rax, 6)
    XCTAssertEqual(r.rflags & RFLAGS.cf, RFLAGS.cf)  // a match
    XCTAssertEqual(r.rflags & RFLAGS.sf, RFLAGS.sf)  // the needle is shorter than 16
    XCTAssertEqual(r.rflags & RFLAGS.zf, 0)  // the haystack has no NUL
  }

  /// ROUNDSD with an immediate rounding mode (floor), and DPPS of two vectors.
  func testRoundAndDotProduct() throws {
    let m = try machine([
      0xF2, 0x0F, 0x10, 0x07,  // movsd xmm0, [rdi]
      0x66, 0x0F, 0x3A, 0x0B, 0xC0, 0x01,  // roundsd xmm0, xmm0, 1
      0x66, 0x48, 0x0F, 0x7E, 0xC0,  // movq rax, xmm0
      0x0F, 0x28, 0x4F, 0x10,  // movaps xmm1, [rdi+16]
      0x66, 0x0F, 0x3A, 0x40, 0x4F, 0x20, 0xF1,  // dpps xmm1, [rdi+32], 0xF1
      0x66, 0x48, 0x0F, 0x7E, 0xCB,  // movq rbx, xmm1
      0xF4,
    ])
    var bytes = [UInt8](repeating: 0, count: 48)
    func put(_ o: Int, _ v: UInt64, _ n: Int) {
      for k in 0..<n { bytes[o + k] = UInt8(truncatingIfNeeded: v >> UInt64(8 * k)) }
    }
    put(0, (-1.5 as Double).bitPattern, 8)
    for (i, f) in ([1, 2, 3, 4, 5, 6, 7, 8] as [Float]).enumerated() {
      put(16 + i * 4, UInt64(f.bitPattern), 4)
    }
    try m.memory.write(GuestPhysicalAddress(SSE4Tests.data), bytes: bytes)
    let r = try run(m)
    XCTAssertEqual(Double(bitPattern: r.rax), -2.0)
    XCTAssertEqual(r.rbx, UInt64((70 as Float).bitPattern))
  }

  /// A policy without SSSE3/SSE4 makes their instructions #UD (no IDT: not a HLT).
  func testPolicyWithoutSSE4MakesThemUndefined() throws {
    var spec = CPUIDPolicySpec()
    spec.disable = ["ssse3", "sse4_1", "sse4_2", "pni"]
    let p = try spec.build()
    for code: [UInt8] in [
      [0x66, 0x0F, 0x38, 0x00, 0xC0],  // pshufb
      [0x66, 0x0F, 0x38, 0x17, 0xC0],  // ptest
      [0xF2, 0x0F, 0x38, 0xF1, 0xC0],  // crc32
      [0xF2, 0x0F, 0x7C, 0xC0],  // haddps
    ] {
      XCTAssertEqual(try machine(code + [0xF4]).cpu.run(), .halt)
      XCTAssertNotEqual(try machine(code + [0xF4], cpuid: p).cpu.run(), .halt)
    }
  }
}
