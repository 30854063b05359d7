import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// Segment limit and type checks in 32-bit protected mode (SDM vol. 3, 5.3-5.4; issue 8).
final class SegmentCheckTests: XCTestCase {
  static let code: UInt64 = 0x10000
  static let idt: UInt64 = 0x50000
  static let handlers: UInt64 = 0x20000

  /// Flat 32-bit protected mode with a GDT (null, flat code 0x08, flat data 0x10,
  /// code limited to 64 KiB 0x18) and an IDT whose vector v handler is `mov eax,v ; hlt`.
  func machine32(_ code: [UInt8], esp: UInt64 = 0x80000) throws -> TestMachine {
    let m = try TestMachine(ramMiB: 16)
    try m.load(code, at: SegmentCheckTests.code)
    let gdt: [UInt64] = [0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0x0040_9A00_0000_FFFF]
    for (i, d) in gdt.enumerated() {
      try m.memory.write(GuestPhysicalAddress(0x60000 + UInt64(i) * 8), value: d)
    }
    for v in 0..<32 {
      let h = SegmentCheckTests.handlers + UInt64(v) * 16
      try m.load([0xB8, UInt8(v), 0, 0, 0, 0xF4], at: h)
      let gate = (h & 0xFFFF) | (0x08 << 16) | (UInt64(0x8E) << 40) | ((h >> 16) & 0xFFFF) << 48
      try m.memory.write(GuestPhysicalAddress(SegmentCheckTests.idt + UInt64(v) * 8), value: gate)
    }
    try m.setProtectedMode32(rip: SegmentCheckTests.code)
    var s = try m.cpu.getState()
    s.general.rsp = esp
    s.special.gdt = DescriptorTableRegister(base: 0x60000, limit: 31)
    s.special.idt = DescriptorTableRegister(base: SegmentCheckTests.idt, limit: 255)
    try m.cpu.setState(s)
    return m
  }

  func setSegment(
    _ m: TestMachine, _ which: WritableKeyPath<SpecialRegisters, SegmentRegister>,
    _ d: SegmentRegister
  ) throws {
    var s = try m.cpu.getState()
    s.special[keyPath: which] = d
    try m.cpu.setState(s)
  }

  /// Runs to HLT; returns (vector in EAX, error code, faulting EIP) for a handler,
  /// or (nil, nil, EIP) when the code itself halted.
  func run(_ m: TestMachine, file: StaticString = #filePath, line: UInt = #line) throws -> (
    vector: UInt64?, code: UInt64?, eip: UInt64
  ) {
    XCTAssertEqual(try m.cpu.run(), .halt, file: file, line: line)
    let g = try m.cpu.getState().general
    if g.rip < SegmentCheckTests.handlers || g.rip >= SegmentCheckTests.handlers + 32 * 16 {
      return (nil, nil, g.rip)
    }
    let sp = GuestPhysicalAddress(try m.cpu.getState().special.ss.base + g.rsp)
    let hasCode: Set<UInt64> = [8, 10, 11, 12, 13, 14, 17]
    let word = { (i: UInt64) in UInt64(try m.memory.read(sp + i * 4, as: UInt32.self)) }
    if hasCode.contains(g.rax) { return (g.rax, try word(0), try word(1)) }
    return (g.rax, nil, try word(0))
  }

  static func data(base: UInt64 = 0, limit: UInt32, type: UInt8 = 0x3, big: Bool = true)
    -> SegmentRegister
  {
    SegmentRegister(selector: 0x10, base: base, limit: limit, type: type, db: big)
  }

  func testDataReadPastLimitIsGP() throws {
    // mov eax,[0xffc] ; mov eax,[0xffd] ; hlt
    let m = try machine32([0xA1, 0xFC, 0x0F, 0, 0, 0xA1, 0xFD, 0x0F, 0, 0, 0xF4])
    try setSegment(m, \.ds, Self.data(limit: 0xFFF))
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.code, 0)
    XCTAssertEqual(r.eip, SegmentCheckTests.code + 5, "the last in-limit read succeeded")
  }

  func testStackSegmentPastLimitIsSS() throws {
    // mov eax,ss:[0x1000] ; hlt
    let m = try machine32([0x36, 0xA1, 0x00, 0x10, 0, 0, 0xF4], esp: 0xF00)
    try setSegment(m, \.ss, Self.data(limit: 0xFFF))
    let r = try run(m)
    XCTAssertEqual(r.vector, 12)
    XCTAssertEqual(r.code, 0)
    XCTAssertEqual(r.eip, SegmentCheckTests.code)
  }

  func testWriteToReadOnlyDataIsGP() throws {
    // mov eax,[0x100] ; mov [0x100],eax ; hlt
    let m = try machine32([0xA1, 0, 1, 0, 0, 0xA3, 0, 1, 0, 0, 0xF4])
    try setSegment(m, \.ds, Self.data(limit: 0xFFFF_FFFF, type: 0x1))
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.eip, SegmentCheckTests.code + 5)
  }

  func testExpandDownSegment() throws {
    // mov eax,es:[0x1000] ; mov eax,es:[0x800] ; hlt
    let m = try machine32([0x26, 0xA1, 0, 0x10, 0, 0, 0x26, 0xA1, 0, 0x08, 0, 0, 0xF4])
    try setSegment(m, \.es, Self.data(limit: 0xFFF, type: 0x7))
    let r = try run(m)
    XCTAssertEqual(r.vector, 13, "offsets at or below the limit are outside an expand-down segment")
    XCTAssertEqual(r.eip, SegmentCheckTests.code + 6)
  }

  func testExpandDown16BitUpperBound() throws {
    // mov eax,es:[0xfffe] (bytes up to 0x10001 > 0xffff with B=0) ; hlt
    let m = try machine32([0x26, 0xA1, 0xFE, 0xFF, 0, 0, 0xF4])
    try setSegment(m, \.es, Self.data(limit: 0xFFF, type: 0x7, big: false))
    XCTAssertEqual(try run(m).vector, 13)
  }

  func testNullSegmentIsGP() throws {
    // mov eax,fs:[0x100] ; hlt
    let m = try machine32([0x64, 0xA1, 0, 1, 0, 0, 0xF4])
    try setSegment(m, \.fs, InterpreterCPU.nullSegment(0))
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.code, 0)
  }

  func testReadOfExecuteOnlyCodeIsGP() throws {
    // mov eax,cs:[0x100] ; hlt      (CS execute-only)
    let m = try machine32([0x2E, 0xA1, 0, 1, 0, 0, 0xF4])
    var cs = SegmentRegister.flatCode32(selector: 0x08)
    cs.type = 0x9
    try setSegment(m, \.cs, cs)
    XCTAssertEqual(try run(m).vector, 13)
  }

  func testFetchPastCSLimitIsGP() throws {
    // nop ; nop ; (limit) nop
    let m = try machine32([0x90, 0x90, 0x90, 0xF4])
    var cs = SegmentRegister.flatCode32(selector: 0x08)
    cs.limit = UInt32(SegmentCheckTests.code + 1)
    try setSegment(m, \.cs, cs)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.eip, SegmentCheckTests.code + 2)
  }

  func testInstructionStraddlingCSLimitIsGP() throws {
    // mov eax,imm32 whose last byte lies past the limit
    let m = try machine32([0xB8, 1, 2, 3, 4, 0xF4])
    var cs = SegmentRegister.flatCode32(selector: 0x08)
    cs.limit = UInt32(SegmentCheckTests.code + 3)
    try setSegment(m, \.cs, cs)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.eip, SegmentCheckTests.code)
  }

  func testFarJumpPastTargetLimitIsGP() throws {
    // jmp far 0x18:0x20000 (selector 0x18 has a 64 KiB limit)
    let m = try machine32([0xEA, 0, 0, 2, 0, 0x18, 0])
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.code, 0)
    XCTAssertEqual(r.eip, SegmentCheckTests.code)
  }

  /// Flat 32-bit code whose CS limit ends `limit` bytes past the code's start.
  func limitCS(_ m: TestMachine, _ limit: UInt64) throws {
    var cs = SegmentRegister.flatCode32(selector: 0x08)
    cs.limit = UInt32(SegmentCheckTests.code + limit)
    try setSegment(m, \.cs, cs)
  }

  /// The handler's ESP: 16 bytes (EFLAGS, CS, EIP, error code) below the fault's ESP.
  func faultESP(_ m: TestMachine) throws -> UInt64 { try m.cpu.getState().general.rsp + 16 }

  func testNearJumpPastCSLimitFaultsAtTheJump() throws {
    // jmp +0x1b (to code+0x20, past a limit of code+0x10)
    let m = try machine32([0xE9, 0x1B, 0, 0, 0, 0xF4])
    try limitCS(m, 0x10)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.code, 0)
    XCTAssertEqual(r.eip, SegmentCheckTests.code, "the JMP faults, not the fetch at its target")
  }

  func testNearCallPastCSLimitPushesNothing() throws {
    // call +0x1b
    let m = try machine32([0xE8, 0x1B, 0, 0, 0, 0xF4])
    try limitCS(m, 0x10)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.eip, SegmentCheckTests.code)
    XCTAssertEqual(try faultESP(m), 0x80000, "ESP as before the CALL")
  }

  func testNearRetPastCSLimitLeavesESP() throws {
    // push 0x20000 ; ret
    let m = try machine32([0x68, 0, 0, 2, 0, 0xC3, 0xF4])
    try limitCS(m, 0x10)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.eip, SegmentCheckTests.code + 5)
    XCTAssertEqual(try faultESP(m), 0x80000 - 4, "the return address is still on the stack")
  }

  func testLoopPastCSLimitLeavesECX() throws {
    // mov ecx,2 ; loop +0x10 (to code+0x17, past a limit of code+0x10) ; hlt
    let m = try machine32([0xB9, 2, 0, 0, 0, 0xE2, 0x10, 0xF4])
    try limitCS(m, 0x10)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.eip, SegmentCheckTests.code + 5)
    XCTAssertEqual(try m.cpu.getState().general.rcx, 2, "ECX is not decremented by a faulting LOOP")
  }

  /// An instruction at IP 0xFFFF of a 16-bit segment (limit 0xFFFF) whose
  /// immediate lies at 0x10000 faults; it does not wrap to offset 0.
  func test16BitInstructionCrossing64KIsGP() throws {
    let m = try machine32([0xF4])
    try m.load([0xB0], at: 0x2FFFF)  // mov al, imm8
    try m.load([0x12, 0xF4], at: 0x20000)  // what a wrapped fetch would run
    try setSegment(
      m, \.cs, SegmentRegister(selector: 0x18, base: 0x20000, limit: 0xFFFF, type: 0xB, db: false))
    var s = try m.cpu.getState()
    s.general.rip = 0xFFFF
    try m.cpu.setState(s)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.code, 0)
    XCTAssertEqual(r.eip, 0xFFFF)
  }

  /// The translator compiles no block under a CS limit (its code checks none).
  func testTranslatorStopsAtCSLimit() throws {
    // nop ; nop ; mov eax,imm32 (straddles the limit) ; hlt
    let m = try machine32([0x90, 0x90, 0xB8, 1, 2, 3, 4, 0xF4])
    try m.cpu.enableTranslation()
    try limitCS(m, 3)
    let r = try run(m)
    XCTAssertEqual(r.vector, 13)
    XCTAssertEqual(r.eip, SegmentCheckTests.code + 2)
  }

  /// Real mode checks the cached limit: a word at 0xFFFF overruns a 64 KiB DS (#GP via
  /// the IVT), while a DS left with a 4 GiB limit ("unreal mode") reaches past 1 MiB.
  func testRealModeLimitAndUnrealMode() throws {
    let m = try TestMachine(ramMiB: 16)
    // mov al,[0xffff] ; mov ax,[0xffff] ; hlt        #GP handler at 0000:0500: hlt
    try m.load([0xA0, 0xFF, 0xFF, 0x8B, 0x06, 0xFF, 0xFF, 0xF4], at: 0x7C00)
    try m.load([0xF4], at: 0x500)
    try m.memory.write(GuestPhysicalAddress(13 * 4), value: UInt32(0x0000_0500))
    var s = CPUState()
    s.general.rip = 0x7C00
    s.general.rsp = 0x7000
    s.special.cs = .realMode(selector: 0, code: true)
    for k in [\SpecialRegisters.ds, \.es, \.ss, \.fs, \.gs] {
      s.special[keyPath: k] = .realMode(selector: 0)
    }
    s.special.idt = DescriptorTableRegister(base: 0, limit: 0x3FF)
    try m.cpu.setState(s)
    XCTAssertEqual(try m.cpu.run(), .halt)
    XCTAssertEqual(try m.cpu.getState().general.rip, 0x501, "in the #GP handler")
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x7000 - 6), as: UInt16.self), 0x7C03)

    // Unreal mode: mov ax,[dword 0x100000] ; hlt
    let u = try TestMachine(ramMiB: 16)
    try u.load([0x67, 0x8B, 0x05, 0, 0, 0x10, 0, 0xF4], at: 0x7C00)
    try u.memory.write(GuestPhysicalAddress(0x10_0000), value: UInt16(0xBEEF))
    s.special.ds.limit = 0xFFFF_FFFF
    try u.cpu.setState(s)
    XCTAssertEqual(try u.cpu.run(), .halt)
    XCTAssertEqual(try u.cpu.getState().general.rax & 0xFFFF, 0xBEEF)
  }

  func testLongModeIgnoresLimits() throws {
    // In 64-bit mode a DS with a tiny limit is not checked: mov eax,[0x2000] ; hlt
    let m = try TestMachine(ramMiB: 16)
    try m.load([0x8B, 0x04, 0x25, 0, 0x20, 0, 0, 0xF4], at: 0x10000)
    try m.setLongMode(rip: 0x10000)
    var s = try m.cpu.getState()
    s.special.ds = Self.data(limit: 0xFF, type: 0x1)
    try m.cpu.setState(s)
    XCTAssertEqual(try m.cpu.run(), .halt)
    XCTAssertEqual(try m.cpu.getState().general.rip, 0x10008)
  }
}
