import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// The one decoder of the hot forms (DecodedForms.swift) and the one set of handlers
/// (FormSemantics.swift), reached cached and uncached.
final class DecodedFormsTests: XCTestCase {
  /// Decodes `bytes` with the full decoder's entry points in the CPU's current mode.
  func decode(_ m: TestMachine, _ bytes: [UInt8]) throws -> (Bool, DecodedInsn) {
    let buf = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
    defer { buf.deallocate() }
    buf.initializeMemory(as: UInt8.self, repeating: 0x90, count: 32)
    buf.copyMemory(from: bytes, byteCount: bytes.count)
    let cpu = m.cpu
    cpu.fetchPtr = buf
    cpu.fetchAvail = 15
    cpu.ipos = 0
    let b = try cpu.decodeStart()
    var d = DecodedInsn()
    let ok = try withUnsafeMutablePointer(to: &d) { p throws(Fault) in try cpu.decodeForm(b, p) }
    d.len = UInt8(cpu.ipos)
    return (ok, d)
  }

  func testSixteenBitOperandRepresentation() throws {
    let m = try TestMachine(ramMiB: 16)  // real mode: 16-bit code and addresses
    // mov ax,[bp+si-2]: base BP, index SI, SS by default.
    var (ok, d) = try decode(m, [0x8B, 0x42, 0xFE])
    XCTAssertTrue(ok)
    XCTAssertEqual(d.kind, DC.movGE)
    XCTAssertEqual(
      [d.reg, d.rm, d.index, d.scale, d.seg, d.asize, d.size, d.len], [0, 5, 6, 0, 2, 2, 2, 3])
    XCTAssertEqual(d.disp32, -2)
    XCTAssertFalse(d.isReg)
    // add word [0x1234],5 with ES: disp16 alone, no base or index.
    (ok, d) = try decode(m, [0x26, 0x83, 0x06, 0x34, 0x12, 0x05])
    XCTAssertTrue(ok)
    XCTAssertEqual(d.kind, DC.aluEI)
    XCTAssertEqual([d.rm, d.index, d.seg, d.op, d.len], [0xFF, 0xFF, 0, 0, 6])
    XCTAssertEqual(d.disp, 0x1234)
    XCTAssertEqual(d.imm, 5)
    // 0x67 in real mode: 32-bit addressing, [eax+ecx*4+8].
    (ok, d) = try decode(m, [0x67, 0x8B, 0x54, 0x88, 0x08])
    XCTAssertTrue(ok)
    XCTAssertEqual([d.reg, d.rm, d.index, d.scale, d.seg, d.asize], [2, 0, 1, 2, 3, 4])
    // F7 /6 (DIV si) is a decoded form since the translator compiles it.
    (ok, d) = try decode(m, [0xF7, 0xF6])
    XCTAssertTrue(ok)
    XCTAssertEqual([d.kind, d.op, d.rm, d.size], [DC.mulDiv, 6, 6, 2])
    // Not decoded forms: LEA of a register (#UD), CPUID, FF /3 (far CALL).
    XCTAssertFalse(try decode(m, [0x8D, 0xC0]).0)
    XCTAssertFalse(try decode(m, [0x0F, 0xA2]).0)
    XCTAssertFalse(try decode(m, [0xFF, 0x1F]).0)
  }

  func testSixteenBitFormsRunThroughTheSharedHandlers() throws {
    let m = try TestMachine(ramMiB: 16)
    // bx=0x100 bp=0x200 si=0x10 di=0xFFF0, ds=0x100, ss=0x200
    try m.memory.write(GuestPhysicalAddress(0x1000 + 0x112), value: UInt16(0x1111))  // ds:bx+si+2
    try m.memory.write(GuestPhysicalAddress(0x2000 + 0x1EE), value: UInt16(0x2222))  // ss:(bp+di-2)&ffff
    let code: [UInt8] = [
      0x8B, 0x40, 0x02,  // mov ax,[bx+si+2]
      0x8B, 0x4B, 0xFE,  // mov cx,[bp+di-2] (wraps at 64 KiB, SS)
      0x8D, 0x11,  // lea dx,[bx+di] (wraps)
      0x83, 0x40, 0x02, 0x05,  // add word [bx+si+2],5
      0xF4,
    ]
    try m.load(code, at: 0x7C00)
    var s = CPUState()
    s.general.rip = 0x7C00
    s.general.rsp = 0x7000
    s.general.rbx = 0x100
    s.general.rbp = 0x200
    s.general.rsi = 0x10
    s.general.rdi = 0xFFF0
    s.special.ds = .realMode(selector: 0x100)
    s.special.ss = .realMode(selector: 0x200)
    try m.cpu.setState(s)
    XCTAssertEqual(try m.cpu.run(), .halt)
    let g = try m.cpu.getState().general
    XCTAssertEqual(g.rax, 0x1111)
    XCTAssertEqual(g.rcx, 0x2222)
    XCTAssertEqual(g.rdx, 0x00F0)
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x1112), as: UInt16.self), 0x1116)
    // Real mode is never cached: all of it went through step().
    XCTAssertEqual(m.cpu.statistics()["decode.cache_hits"], 0)
  }

  /// The same instructions run cached (mid-page) and uncached (their last bytes within
  /// 16 of a page end) leave the same registers and flags.
  func testCachedAndUncachedRunsAgree() throws {
    let body: [UInt8] = [
      0x48, 0x8D, 0x44, 0x8B, 0x10,  // lea rax,[rbx+rcx*4+16]
      0x48, 0x01, 0xC8,  // add rax,rcx
      0x48, 0xC1, 0xE0, 0x03,  // shl rax,3
      0x48, 0x0F, 0xAF, 0xC1,  // imul rax,rcx
      0x0F, 0xB6, 0xD0,  // movzx edx,al
      0x48, 0x0F, 0xBE, 0xF0,  // movsx rsi,al
      0x48, 0x39, 0xD0,  // cmp rax,rdx
      0x0F, 0x9F, 0xC1,  // setg cl
      0x48, 0x0F, 0x4C, 0xFA,  // cmovl rdi,rdx
      0x53, 0x5F,  // push rbx ; pop rdi
      0x48, 0xD3, 0xF8,  // sar rax,cl
      0xF4,
    ]
    func run(at base: UInt64) throws -> (GeneralRegisters, UInt64, [String: UInt64]) {
      let m = try TestMachine(ramMiB: 64)
      try m.load(body, at: base)
      try m.setLongMode(rip: base)
      var s = try m.cpu.getState()
      s.general.rbx = 0x1234_5678_9ABC
      s.general.rcx = 0x77
      try m.cpu.setState(s)
      XCTAssertEqual(try m.cpu.run(), .halt)
      let st = try m.cpu.getState()
      return (st.general, st.general.rflags & 0x8D5, m.cpu.statistics())
    }
    let (a, fa, sa) = try run(at: 0x10000)
    // Every instruction starts within 16 bytes of a page end except the first few.
    let (b, fb, sb) = try run(at: 0x11000 - UInt64(body.count) + 1)
    XCTAssertEqual(a.rip - 0x10000, b.rip - (0x11000 - UInt64(body.count) + 1))
    for (x, y) in [
      (a.rax, b.rax), (a.rcx, b.rcx), (a.rdx, b.rdx), (a.rsi, b.rsi), (a.rdi, b.rdi),
      (a.rsp, b.rsp), (fa, fb),
    ] {
      XCTAssertEqual(x, y)
    }
    XCTAssertGreaterThan(sa["decode.cache_hits"] ?? 0, 10)
    XCTAssertGreaterThan(sb["decode.uncached"] ?? 0, (sa["decode.uncached"] ?? 0) + 2)
  }
}
