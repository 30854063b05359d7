import TestSupport
import X86
import XCTest

@testable import Interpreter
@testable import Translator

/// SSE moves, logic and packed-integer forms, PUSH imm and PAUSE translated
/// (BlockCompilerSSE.swift), and CLD/STD, fences and BSWAP (BlockCompilerSystem.swift),
/// against the interpreter.
extension TranslatorTests {
  /// The SSE forms blocks compile, as (prefix, opcode) for `X86Encoder.sse`.
  static let sseOps: [(UInt8?, UInt8)] = [
    (0x66, 0xEF), (0x66, 0xEB), (0x66, 0xDB), (0x66, 0xDF), (0x66, 0x74), (0x66, 0x75),
    (0x66, 0x76), (0x66, 0xFC), (0x66, 0xFE), (0x66, 0xD4), (0x66, 0xF8), (0x66, 0xDA),
    (0x66, 0xDE), (0x66, 0x60), (0x66, 0x62), (0x66, 0x6C), (0x66, 0x6D), (0x66, 0x64),
    (0x66, 0xD5), (0x66, 0xE4), (0x66, 0xF4), (0x66, 0xF6), (0x66, 0x67), (0x66, 0xD1),
    (0x66, 0xE2), (0x66, 0xF3), (nil, 0x57), (nil, 0x54), (nil, 0x56), (0x66, 0x55),
    (nil, 0x14), (0x66, 0x15),
  ]
  static let sseLoads: [(UInt8?, UInt8, Bool)] = [  // (prefix, opcode, aligned)
    (nil, 0x10, false), (0x66, 0x10, false), (0xF3, 0x6F, false), (nil, 0x28, true),
    (0x66, 0x6F, true), (0xF3, 0x10, false), (0xF2, 0x10, false), (0xF3, 0x7E, false),
    (nil, 0x12, false), (nil, 0x16, false),
  ]
  static let sseStores: [(UInt8?, UInt8, Bool)] = [
    (nil, 0x11, false), (0x66, 0x7F, true), (0xF3, 0x7F, false), (nil, 0x29, true),
    (0xF3, 0x11, false), (0xF2, 0x11, false), (0x66, 0xD6, false),
  ]

  /// Random code of these forms on all sixteen XMM registers, register and memory operands
  /// (some straddling a page, some in the code's own page), with flag-setting integer
  /// instructions between them, in a counted loop; then every XMM register is stored to
  /// the data area (which `run` hashes) and HLT.
  func sseProgram(_ rng: inout SeededRandom, length: Int, loops: UInt32) -> [UInt8] {
    var e = X86Encoder()
    let regs = HostReg.allCases.filter { $0 != .rcx && $0 != .rsp && $0 != .r15 }
    func pick() -> HostReg { regs[Int(rng.next() % UInt64(regs.count))] }
    func x() -> UInt8 { UInt8(rng.next() % 16) }
    for i in UInt8(0)..<16 {
      e.sse(0x66, 0x6E, reg: i, rm: regs[Int(i) % regs.count].rawValue, w: true)
      e.sse(0x66, 0x6C, reg: i, rm: (i + 5) % 16)
    }
    e.movImm(.rcx, UInt64(loops))
    let top = e.newLabel()
    e.bind(top)
    for _ in 0..<length {
      let a = x()
      let b = x()
      let alignedDisp = Int32(rng.next() % 0x1FF) * 16
      let anyDisp = rng.next() % 4 == 0 ? 0xFF8 + Int32(rng.next() % 8) : Int32(rng.next() % 0x1FF0)
      func mem(_ aligned: Bool) -> HostMem { HostMem(.r15, aligned ? alignedDisp : anyDisp) }
      switch rng.next() % 14 {
      case 0, 1:
        let (p, op) = Self.sseOps[Int(rng.next() % UInt64(Self.sseOps.count))]
        if rng.next() & 1 == 0 {
          e.sse(p, op, reg: a, rm: b)
        } else {
          e.sse(p, op, reg: a, mem: mem(true))
        }
      case 2:
        let (p, op, aligned) = Self.sseLoads[Int(rng.next() % UInt64(Self.sseLoads.count))]
        if rng.next() & 1 == 0 && op != 0x12 && op != 0x16 || p == 0x66 && op == 0x12 {
          e.sse(p, op, reg: a, mem: mem(aligned))
        } else if rng.next() & 1 == 0 {
          e.sse(p, op, reg: a, rm: b)
        } else {
          e.sse(p, op, reg: a, mem: mem(aligned))
        }
      case 3:
        let (p, op, aligned) = Self.sseStores[Int(rng.next() % UInt64(Self.sseStores.count))]
        if rng.next() & 1 == 0 {
          e.sse(p, op, reg: a, rm: b)
        } else {
          e.sse(p, op, reg: a, mem: mem(aligned))
        }
      case 4:
        let forms: [(UInt8?, UInt8)] = [
          (0x66, 0x70), (0xF3, 0x70), (0xF2, 0x70), (nil, 0xC6), (0x66, 0xC6),
        ]
        let (p, op) = forms[Int(rng.next() % 5)]
        let imm = UInt8(truncatingIfNeeded: rng.next())
        if rng.next() & 1 == 0 {
          e.sse(p, op, reg: a, rm: b, imm: imm)
        } else {
          e.sse(p, op, reg: a, mem: mem(true), imm: imm)
        }
      case 5, 6:
        // MOVD/MOVQ xmm, r/m (6E) and r/m, xmm (7E).
        let op: UInt8 = rng.next() & 1 == 0 ? 0x6E : 0x7E
        let w = rng.next() & 1 == 0
        if rng.next() & 1 == 0 {
          e.sse(0x66, op, reg: a, rm: pick().rawValue, w: w)
        } else {
          e.sse(0x66, op, reg: a, mem: mem(false), w: w)
        }
      case 7:
        if rng.next() & 1 == 0 {
          e.sse(0x66, 0xD7, reg: pick().rawValue, rm: a)
        } else {
          e.sse(0x66, 0xC5, reg: pick().rawValue, rm: a, imm: UInt8(rng.next() % 8))
        }
      case 8:
        let shifts: [(UInt8, UInt8)] = [
          (0x71, 2), (0x71, 4), (0x71, 6), (0x72, 2), (0x72, 4), (0x72, 6), (0x73, 2), (0x73, 3),
          (0x73, 6), (0x73, 7),
        ]
        let (op, digit) = shifts[Int(rng.next() % UInt64(shifts.count))]
        e.sse(0x66, op, reg: digit, rm: a, imm: UInt8(rng.next() % 20))
      case 9:
        // PUSH imm8/imm32, then a POP: the kernel's interrupt entry stubs.
        if rng.next() & 1 == 0 {
          e.emit(0x6A)
          e.emit(UInt8(truncatingIfNeeded: rng.next()))
        } else {
          e.emit(0x68)
          e.emit32(Int32(truncatingIfNeeded: rng.next()))
        }
        e.pop(pick())
      case 10:
        // PAUSE, CLD, STD, LFENCE/MFENCE/SFENCE, BSWAP (BlockCompilerSystem.swift).
        switch rng.next() % 5 {
        case 0: e.emit(0xF3); e.emit(0x90)
        case 1: e.emit(0xFC)
        case 2: e.emit(0xFD)
        case 3:
          for b: UInt8 in [0x0F, 0xAE, [0xE8, 0xF0, 0xF8][Int(rng.next() % 3)]] { e.emit(b) }
        default: e.bswap(pick(), rng.next() & 1 == 0 ? .b32 : .b64)
        }
      case 11: e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, pick(), pick())
      case 12: e.test(pick(), pick())
      default: e.alu(.adc, pick(), imm: 3)
      }
    }
    e.dec(.rcx)
    e.jcc(.ne, top)
    e.alu(.adc, .rax, .rbx)
    for i in UInt8(0)..<16 { e.movdqu(HostMem(.r15, Int32(i) * 16), xmm: i) }
    var bytes = e.bytes
    bytes.append(0xF4)
    return bytes
  }

  func testSSEFormsMatchTheInterpreter() throws {
    let (translated, total) = try assertProgramsMatchTheInterpreter(seeds: 1...60, lockstep: true) {
      seed in
      var rng = SeededRandom(seed: seed &* 7_919)
      return sseProgram(&rng, length: 1 + Int(seed % 30), loops: UInt32(1 + seed % 200))
    }
    XCTAssertGreaterThan(translated, total * 3 / 4, "blocks must have run")
  }

  /// Runs `code` from UnitTests.codeBase with SSE usable and the halting IDT, on the
  /// interpreter and the translator; asserts the same registers and instruction count
  /// and returns the translator's registers and statistics.
  func runFaulting(_ code: [UInt8], r15: UInt64) throws -> (GeneralRegisters, [String: UInt64]) {
    var results: [(GeneralRegisters, UInt64, [String: UInt64])] = []
    for translate in [false, true] {
      let m = try TestMachine(ramMiB: 64)
      try m.load(code, at: UnitTests.codeBase)
      try m.setLongMode(rip: UnitTests.codeBase)
      try m.installHaltingIDT(idtBase: UnitTests.idtBase, handlerBase: UnitTests.handlerBase)
      var s = try m.cpu.getState()
      s.special.cr4 |= CR4.osfxsr
      s.general.r15 = r15
      try m.cpu.setState(s)
      if translate { try m.cpu.enableTranslation(lockstep: false) }
      XCTAssertEqual(try m.cpu.run(), .halt)
      let st = m.cpu.statistics()
      results.append((try m.cpu.getState().general, st["instructions"] ?? 0, st))
    }
    XCTAssertEqual(results[0].1, results[1].1, "instruction count")
    XCTAssertEqual(results[0].0, results[1].0, "registers and flags")
    return (results[1].0, results[1].2)
  }

  /// MOVDQA whose address becomes misaligned inside a translated loop: #GP (vector 13)
  /// comes from the interpreter at the same instruction count.
  func testMisalignedMOVDQAInABlockIsTheInterpreters() throws {
    var e = X86Encoder()
    e.movImm(.rcx, 100)
    let top = e.newLabel()
    e.bind(top)
    e.sse(0x66, 0x6F, reg: 1, mem: HostMem(.r15))  // movdqa xmm1, [r15]
    e.alu(.add, .r15, imm: 16)
    e.dec(.rcx)
    e.jcc(.ne, top)
    e.alu(.add, .r15, imm: 8)
    e.movImm(.rcx, 100)
    e.jmp(top)
    let (g, st) = try runFaulting(e.bytes, r15: UnitTests.codeBase + 0x10000)
    XCTAssertEqual(g.rax, 13, "#GP's handler ran")
    XCTAssertGreaterThan(st["translator.block_instructions"] ?? 0, 200, "blocks ran")
  }

  /// A translated SSE loop, then CR0.TS set: the same loop's PXOR raises #NM (vector 7)
  /// instead of running the block compiled while SSE was usable.
  func testSSEBlockDoesNotRunWithCR0TSSet() throws {
    var e = X86Encoder()
    e.movImm(.rcx, 100)
    let top = e.newLabel()
    e.bind(top)
    e.sse(0x66, 0xEF, reg: 0, rm: 1)  // pxor xmm0, xmm1
    e.dec(.rcx)
    e.jcc(.ne, top)
    for b: UInt8 in [0x0F, 0x20, 0xC0, 0x48, 0x83, 0xC8, 0x08, 0x0F, 0x22, 0xC0] {
      e.emit(b)  // mov rax, cr0; or rax, 8 (TS); mov cr0, rax
    }
    e.movImm(.rcx, 100)
    e.jmp(top)
    let (g, st) = try runFaulting(e.bytes, r15: 0)
    XCTAssertEqual(g.rax, 7, "#NM's handler ran")
    XCTAssertGreaterThan(st["translator.block_instructions"] ?? 0, 100, "blocks ran")
  }
}
