import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// CLI, STI, PUSHF and POPF in translated blocks (BlockCompilerSystem.swift): the same
/// registers, flags, stack and instruction counts as the interpreter, interrupts taken at
/// the same instruction, and the instructions really translated.
final class TranslatorSystemFlagsTests: XCTestCase {
  static let code: UInt64 = 0x10000
  static let handler: UInt64 = 0x20000  // HLT, for vectors 1 (#DB) and 0x30
  static let idt: UInt64 = 0x50000

  final class Line: InterruptInput {
    var pending: Bool
    init(_ pending: Bool) { self.pending = pending }
    var hasPendingInterrupt: Bool { pending }
    func acknowledgeInterrupt() -> UInt8? {
      pending = false
      return 0x30
    }
    var hasPendingNMI: Bool { false }
    func acknowledgeNMI() {}
  }

  enum Engine { case interpreter, translator, lockstep }

  struct Result: Equatable {
    var regs: GeneralRegisters
    var instructions: UInt64
    var stackTop: UInt64
  }

  func run(_ code: [UInt8], rflags: UInt64, irq: Bool, _ engine: Engine) throws -> (
    Result, [String: UInt64]
  ) {
    let m = try TestMachine(ramMiB: 64)
    try m.load(code, at: Self.code)
    try m.setLongMode(rip: Self.code)
    try m.load([0xF4], at: Self.handler)
    for v in [1, 0x30] {
      let h = Self.handler
      let lo = (h & 0xFFFF) | (0x08 << 16) | (UInt64(0x8E) << 40) | ((h >> 16) & 0xFFFF) << 48
      try m.memory.write(GuestPhysicalAddress(Self.idt + UInt64(v) * 16), value: lo)
      try m.memory.write(GuestPhysicalAddress(Self.idt + UInt64(v) * 16 + 8), value: h >> 32)
    }
    var s = try m.cpu.getState()
    s.special.idt = DescriptorTableRegister(base: Self.idt, limit: 4095)
    s.general.rflags = rflags
    try m.cpu.setState(s)
    if engine != .interpreter { try m.cpu.enableTranslation(lockstep: engine == .lockstep) }
    let line = Line(irq)
    m.cpu.interruptInput = line
    XCTAssertEqual(try m.cpu.run(), .halt)
    XCTAssertNil(m.cpu.lockstepReport)
    let g = try m.cpu.getState().general
    let st = m.cpu.statistics()
    let top = try m.memory.read(GuestPhysicalAddress(g.rsp), as: UInt64.self)
    return (Result(regs: g, instructions: st["instructions"] ?? 0, stackTop: top), st)
  }

  /// Runs `code` on all three engines; they must agree. Returns the translator's counters.
  @discardableResult
  func agree(
    _ code: [UInt8], rflags: UInt64, irq: Bool = false, file: StaticString = #filePath,
    line: UInt = #line
  ) throws -> [String: UInt64] {
    let (a, _) = try run(code, rflags: rflags, irq: irq, .interpreter)
    let (b, st) = try run(code, rflags: rflags, irq: irq, .translator)
    let (c, _) = try run(code, rflags: rflags, irq: irq, .lockstep)
    XCTAssertEqual(a, b, "translator", file: file, line: line)
    XCTAssertEqual(a, c, "lockstep", file: file, line: line)
    return st
  }

  /// spin_lock_irqsave / spin_unlock_irqrestore in a loop:
  /// mov ecx,200 ; top: pushfq ; pop rax ; cli ; add rbx,rcx ; push rax ; popfq ;
  /// dec rcx ; jnz top ; hlt
  let spinlock: [UInt8] = [
    0xB9, 200, 0, 0, 0, 0x9C, 0x58, 0xFA, 0x48, 0x01, 0xCB, 0x50, 0x9D, 0x48, 0xFF, 0xC9,
    0x75, 0xF3, 0xF4,
  ]

  func testSpinlockIdiomIsTranslatedWithIFOnAndOff() throws {
    for rflags: UInt64 in [0x202, 0x002, 0x2C3, 0x6D7] {
      let st = try agree(spinlock, rflags: rflags)
      // 8 instructions per pass, all translated but the first MOV and PUSHF/POP, which
      // fill the fetch and stack TLB entries in the interpreter.
      XCTAssertGreaterThanOrEqual(
        st["translator.block_instructions"] ?? 0, 200 * 8 - 2, "\(rflags)")
    }
  }

  func testSTIShadowCoversOneInstructionThenTheInterruptComes() throws {
    // mov eax,1 ; sti ; mov ebx,2 ; mov ecx,3 ; hlt  (IRQ pending, IF clear)
    let code: [UInt8] = [0xB8, 1, 0, 0, 0, 0xFB, 0xBB, 2, 0, 0, 0, 0xB9, 3, 0, 0, 0, 0xF4]
    let st = try agree(code, rflags: 0x002, irq: true)
    let (r, _) = try run(code, rflags: 0x002, irq: true, .translator)
    XCTAssertEqual(r.regs.rbx, 2, "the instruction in STI's shadow ran")
    XCTAssertEqual(r.regs.rcx, 0, "the interrupt came before the next one")
    XCTAssertEqual(r.stackTop, Self.code + 11, "return address: the MOV after the shadow")
    // The MOV fills the fetch TLB in the interpreter; the STI runs as a block.
    XCTAssertEqual(st["translator.block_instructions"], 1, "STI ran translated")
  }

  func testPOPFThatSetsIFLetsThePendingInterruptInAtOnce() throws {
    // push 0x202 ; popfq ; mov ebx,2 ; hlt  (IRQ pending, IF clear)
    let code: [UInt8] = [0x68, 0x02, 0x02, 0, 0, 0x9D, 0xBB, 2, 0, 0, 0, 0xF4]
    try agree(code, rflags: 0x002, irq: true)
    let (r, _) = try run(code, rflags: 0x002, irq: true, .translator)
    XCTAssertEqual(r.regs.rbx, 0, "no shadow after POPF")
    XCTAssertEqual(r.stackTop, Self.code + 6)
  }

  func testPOPFThatSetsTFSingleStepsAsTheInterpreterDoes() throws {
    // pushfq ; or qword [rsp],0x100 ; popfq ; nop ; mov ebx,2 ; hlt  -> #DB after the NOP
    let code: [UInt8] = [
      0x9C, 0x48, 0x81, 0x0C, 0x24, 0x00, 0x01, 0, 0, 0x9D, 0x90, 0xBB, 2, 0, 0, 0, 0xF4,
    ]
    try agree(code, rflags: 0x002)
    let (r, _) = try run(code, rflags: 0x002, irq: false, .translator)
    XCTAssertEqual(r.regs.rbx, 0)
    XCTAssertEqual(r.stackTop, Self.code + 11, "#DB trap after the NOP")
  }

  func testCLIKeepsTheStatusFlagsAnd16BitCodeIsNotTranslated() throws {
    // stc ; cli ; adc rax,rax ; hlt  -> the carry survives CLI
    let code: [UInt8] = [0xF9, 0xFA, 0x48, 0x11, 0xC0, 0xF4]
    try agree(code, rflags: 0x202)
    var d = DecodedInsn()
    withUnsafeBytes(of: UInt64(0xFA)) {
      BlockCompiler.decodeSystem($0.baseAddress!, &d, mode: 0x18)
    }
    XCTAssertEqual(d.kind, DC.cli)
    d = DecodedInsn()
    withUnsafeBytes(of: UInt64(0xFA)) {
      BlockCompiler.decodeSystem($0.baseAddress!, &d, mode: 0x02)
    }
    XCTAssertEqual(d.kind, DC.none, "16-bit code is not translated")
  }
}
