import TestSupport
import X86
import XCTest

@testable import Interpreter
@testable import Translator

/// CMPXCHG, XADD (with and without LOCK), CBW/CWD, MUL/IMUL/DIV/IDIV, BSF/BSR translated
/// (BlockCompilerArith.swift) against the interpreter.
extension TranslatorTests {
  /// Random code of these forms mixed with flag-setting ALU instructions, register and
  /// memory operands, in a counted loop, then HLT. Divisions get operands that do not
  /// fault, some of them ones the block's conservative IDIV check leaves to the interpreter.
  func arithProgram(_ rng: inout SeededRandom, length: Int, loops: UInt32) -> [UInt8] {
    var e = X86Encoder()
    // rcx counts the loop and r15 points at the data area: neither is a random operand.
    let regs = HostReg.allCases.filter { $0 != .rcx && $0 != .rsp && $0 != .r15 }
    func pick() -> HostReg { regs[Int(rng.next() % UInt64(regs.count))] }
    e.movImm(.rcx, UInt64(loops))
    let top = e.newLabel()
    e.bind(top)
    for _ in 0..<length {
      let s = OpSize.allCases[Int(rng.next() % 4)]
      let a = pick()
      let b = pick()
      let disp = Int32(rng.next() % 0x1FF8)
      let m = HostMem(.r15, rng.next() % 4 == 0 ? 0xFFC + Int32(rng.next() % 4) : disp)
      switch rng.next() % 13 {
      case 0: e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, a, b, s)
      case 1:
        if rng.next() & 1 == 0 { e.load(.rax, m, s) }  // often equal: the store path
        e.cmpxchg(a, b, s)
      case 2:
        if rng.next() & 1 == 0 { e.load(.rax, m, s) }
        e.cmpxchg(m, b, s, lock: rng.next() & 1 == 0)
      case 3: e.xadd(a, b, s)
      case 4:
        e.xadd(m, b, s, lock: rng.next() & 1 == 0)
      case 5:
        let w = [OpSize.b16, .b32, .b64][Int(rng.next() % 3)]
        if rng.next() & 1 == 0 { e.cdq(w) } else { e.cdqe(w) }
      case 6:
        let d = b == .rax || b == .rdx ? HostReg.rbx : b
        if rng.next() & 1 == 0 { e.mul(d, s) } else { e.imul1(d, s) }
      case 7:
        e.load(.r11, m, s)
        if rng.next() & 1 == 0 { e.mul(.r11, s) } else { e.imul1(.r11, s) }
      case 8, 9:
        // The divisor in 8...127 (never 0 or -1), in a register or (10) memory.
        let d = b == .rax || b == .rdx ? HostReg.rbx : b
        e.alu(.and, d, imm: 0x7F, s)
        e.alu(.or, d, imm: 8, s)
        switch rng.next() % 3 {
        case 0:
          // Unsigned: the high half below 8.
          e.alu(.and, s == .b8 ? .rax : .rdx, imm: s == .b8 ? 0x07FF : 7, .b32)
          e.div(d, s)
        case 1:
          // Signed, the dividend sign-extended: computed in the block.
          if s == .b8 { e.cdqe(.b16) } else { e.cdq(s) }
          e.idiv(d, s)
        default:
          // Signed, high half 0 (not always the low half's sign extension: such a
          // division is left to the interpreter, and cannot fault with this divisor).
          e.alu(.and, s == .b8 ? .rax : .rdx, imm: s == .b8 ? 0xFF : 0, .b32)
          e.idiv(d, s)
        }
        if rng.next() & 1 == 0 {
          e.store(m, d, s)
          e.alu(.and, .rdx, imm: 3, .b32)
          e.load(.r11, m, s)
          e.div(.r11, s == .b8 ? .b16 : s)  // high half < 4 < divisor
        }
      case 10: e.alu(.sub, a, m, s)
      case 11:
        // BSF/BSR (16-bit ones stay interpreted), a third of them of zero (left to the
        // interpreter), from a register or memory.
        let w = s == .b64 ? OpSize.b64 : .b32
        let reverse = rng.next() & 1 == 0
        if rng.next() % 3 == 0 { e.alu(.and, b, imm: 0, w) }
        if rng.next() & 1 == 0 {
          e.bitScan(reverse: reverse, a, b, w)
        } else {
          if rng.next() % 3 == 0 { e.storeImm(m, 0, w) }
          e.prefixes(size: w, reg: a.rawValue, mem: m)
          e.emit(0x0F)
          e.emit(reverse ? 0xBD : 0xBC)
          e.modrm(reg: a.rawValue, mem: m)
        }
        e.setcc(.e, pick())  // ZF: the one flag BSF/BSR define
      default: e.test(a, b, s)
      }
    }
    e.dec(.rcx)
    e.jcc(.ne, top)
    e.alu(.adc, .rax, .rbx)
    var bytes = e.bytes
    bytes.append(0xF4)  // hlt
    return bytes
  }

  func testArithFormsMatchTheInterpreter() throws {
    let (translated, total) = try assertProgramsMatchTheInterpreter(seeds: 1...50, lockstep: true) {
      seed in
      var rng = SeededRandom(seed: seed &* 104_729)
      return arithProgram(&rng, length: 1 + Int(seed % 30), loops: UInt32(1 + seed % 200))
    }
    XCTAssertGreaterThan(translated, total * 3 / 4, "blocks must have run")
  }

  /// A division that faults in a translated loop (divisor 0, a quotient too large) leaves
  /// the block before it: #DE comes from the interpreter at the same instruction count,
  /// with the same registers and flags.
  func testDivideErrorInABlockIsTheInterpreters() throws {
    let setups: [(UInt8, OpSize, (inout X86Encoder) -> Void)] = [
      (6, .b64, { $0.alu(.xor, .rdx, .rdx, .b32) }),  // div rbx: rbx counts down to 0
      (6, .b32, { $0.movImm(.rdx, 64) }),  // div ebx: the quotient overflows at ebx = 64
      (7, .b64, { $0.cdq(.b64) }),  // cqo; idiv rbx
      (7, .b16, { $0.cdq(.b16) }),  // cwd; idiv bx
    ]
    for (op, size, setup) in setups {
      var e = X86Encoder()
      e.movImm(.rbx, 100)
      let top = e.newLabel()
      e.bind(top)
      e.alu(.add, .rsi, .rbx)  // flags the side exit must hand over
      e.movImm(.rax, 0x7FFF_1234)
      setup(&e)
      if op == 6 { e.div(.rbx, size) } else { e.idiv(.rbx, size) }
      e.dec(.rbx)
      e.jmp(top)
      var bytes = e.bytes
      bytes.append(0xF4)
      var results: [(GeneralRegisters, UInt64)] = []
      for translate in [false, true] {
        let m = try TestMachine(ramMiB: 64)
        try m.load(bytes, at: UnitTests.codeBase)
        try m.setLongMode(rip: UnitTests.codeBase)
        try m.installHaltingIDT(idtBase: UnitTests.idtBase, handlerBase: UnitTests.handlerBase)
        if translate { try m.cpu.enableTranslation() }
        XCTAssertEqual(try m.cpu.run(), .halt)
        let g = try m.cpu.getState().general
        XCTAssertEqual(g.rax, 0, "op \(op) \(size): #DE's handler ran")
        let st = m.cpu.statistics()
        if translate {
          XCTAssertGreaterThan(st["translator.block_instructions"] ?? 0, 100, "blocks ran")
        }
        results.append((g, st["instructions"] ?? 0))
      }
      XCTAssertEqual(results[0].1, results[1].1, "op \(op) \(size): instruction count")
      XCTAssertEqual(results[0].0, results[1].0, "op \(op) \(size): registers and flags")
    }
  }
}

extension TranslatorTests {
  /// LOCK on a register operand stays #UD (the decode cache and the blocks take LOCK only
  /// on a memory read-modify-write), after the same instructions in both engines.
  func testLockOnARegisterIsStillInvalid() throws {
    var e = X86Encoder()
    e.movImm(.rcx, 50)
    let top = e.newLabel()
    e.bind(top)
    e.xadd(HostMem(.rsp, -64), .rax, .b32, lock: true)
    e.dec(.rcx)
    e.jcc(.ne, top)
    var code = e.bytes
    code += [0xF0, 0x0F, 0xB1, 0xC3]  // lock cmpxchg ebx, eax
    code.append(0xF4)
    var results: [(GeneralRegisters, UInt64)] = []
    for translate in [false, true] {
      let m = try TestMachine(ramMiB: 64)
      try m.load(code, at: UnitTests.codeBase)
      try m.setLongMode(rip: UnitTests.codeBase)
      try m.installHaltingIDT(idtBase: UnitTests.idtBase, handlerBase: UnitTests.handlerBase)
      if translate { try m.cpu.enableTranslation() }
      XCTAssertEqual(try m.cpu.run(), .halt)
      let g = try m.cpu.getState().general
      XCTAssertEqual(g.rax, 6, "#UD's handler ran")
      results.append((g, m.cpu.statistics()["instructions"] ?? 0))
    }
    XCTAssertEqual(results[0].1, results[1].1, "instruction count")
    XCTAssertEqual(results[0].0, results[1].0, "registers and flags")
  }
}
