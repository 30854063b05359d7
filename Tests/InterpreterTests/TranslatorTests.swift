import Engine
import Memory
import TestSupport
import Translator
import X86
import XCTest

@testable import Interpreter

/// The translator engine against the interpreter: the same code from the same state must
/// leave the same registers, status flags, RIP and retired-instruction count.
final class TranslatorTests: XCTestCase {
  func machine64(_ code: [UInt8], options: InterpreterOptions = .init()) throws -> TestMachine {
    let m = try TestMachine(ramMiB: 64, options: options)
    try m.load(code, at: UnitTests.codeBase)
    try m.setLongMode(rip: UnitTests.codeBase)
    return m
  }

  func runToHalt(_ m: TestMachine) throws -> GeneralRegisters {
    XCTAssertEqual(try m.cpu.run(), .halt)
    return try m.cpu.getState().general
  }

  /// Random register and memory instructions, assembled with our own encoder (so the guest code
  /// is exactly the forms the translator compiles), inside a counted loop, then HLT.
  func randomProgram(_ rng: inout SeededRandom, length: Int, loops: UInt32) -> [UInt8] {
    var e = X86Encoder()
    // rcx counts the loop; keep it out of the random destinations.
    // r15 points at a data area (see `run`); keep it and rcx out of the random destinations.
    let regs = HostReg.allCases.filter { $0 != .rcx && $0 != .rsp && $0 != .r15 }
    func pick() -> HostReg { regs[Int(rng.next() % UInt64(regs.count))] }
    e.movImm(.rcx, UInt64(loops))
    let top = e.newLabel()
    e.bind(top)
    for _ in 0..<length {
      let s = OpSize.allCases[Int(rng.next() % 4)]
      let a = pick()
      let b = pick()
      let imm = Int32(truncatingIfNeeded: rng.next())
      let small = Int32(Int8(truncatingIfNeeded: imm))
      // Displacements across two data pages, some straddling the page boundary.
      let disp = Int32(rng.next() % 0x1FF8)
      let m = HostMem(.r15, rng.next() % 4 == 0 ? 0xFFC + Int32(rng.next() % 4) : disp)
      switch rng.next() % 20 {
      case 12: e.store(m, a, s)
      case 13: e.load(a, m, s)
      case 14: e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, a, m, s)
      case 15: e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, m, a, s)
      case 16: e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, m, imm: small, s)
      case 17: e.loadZX(a, m, rng.next() & 1 == 0 ? .b8 : .b16)
      case 18: e.mov(a, b, s)
      case 19:
        e.push(a)
        e.pop(b)
      case 0: e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, a, b, s)
      case 1:
        e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, a, imm: rng.next() & 1 == 0 ? imm : small, s)
      case 2: e.mov(a, b, s)
      case 3: e.movImm(a, rng.next() & 1 == 0 ? rng.next() : rng.next() & 0xFFFF)
      case 11 where s == .b8: e.storeImm(m, small, s)
      case 4: e.test(a, b, s)
      case 5: e.test(a, imm: imm, s)
      case 6: e.shift(ShiftOp.allCases[Int(rng.next() % 7)], a, imm: UInt8(rng.next() % 70), s)
      case 7: if rng.next() & 1 == 0 { e.inc(a, s) } else { e.dec(a, s) }
      case 8: e.imul(a, b, s == .b8 ? .b16 : s)
      case 9:
        e.lea(
          a, HostMem(b, small, index: pick(), scale: UInt8(1 << (rng.next() % 4))),
          s.rawValue < 4 ? .b32 : s)
      case 10: e.alu(.adc, a, b, s)
      default: e.alu(.sbb, a, imm: small, s)
      }
    }
    e.dec(.rcx)
    e.jcc(.ne, top)
    // A flag-consuming tail so the flags leaving the loop matter.
    e.alu(.adc, .rax, .rbx)
    var bytes = e.bytes
    bytes.append(0xF4)  // hlt
    return bytes
  }

  func run(_ code: [UInt8], translate: Bool, seed: UInt64, lockstep: Bool = false) throws -> (
    GeneralRegisters, UInt64, [String: UInt64]
  ) {
    let m = try machine64(code)
    if translate { try m.cpu.enableTranslation(lockstep: lockstep) }
    var rng = SeededRandom(seed: seed ^ 0x5EED)
    var s = try m.cpu.getState()
    for i in 0..<16 where i != 4 { s.general[i] = rng.next() }
    // Data in the code's own page for odd seeds (stores there leave the block), else apart.
    s.general[15] = UnitTests.codeBase + (seed & 1 == 1 ? 0x800 : 0x10000)
    s.general.rflags = 2 | (rng.next() & RFLAGS.status)
    s.special.cr4 |= CR4.osfxsr  // SSE usable (TranslatorSSEFormsTests)
    try m.cpu.setState(s)
    var g = try runToHalt(m)
    // Fold the data area into r15's slot so callers compare memory too.
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in try m.memory.readBytes(GuestPhysicalAddress(g.r15), count: 0x2000) {
      h = (h ^ UInt64(b)) &* 0x100_0000_01b3
    }
    g.r15 = h
    let st = m.cpu.statistics()
    return (g, st["instructions"] ?? 0, st)
  }

  /// Runs `program(seed)` for each seed on the interpreter and on the translator (and, with
  /// `lockstep`, in lockstep) and asserts equal counts, registers and flags. Returns the
  /// instructions retired in translated blocks and in all.
  func assertProgramsMatchTheInterpreter(
    seeds: ClosedRange<UInt64>, lockstep: Bool, program: (UInt64) -> [UInt8],
    file: StaticString = #filePath, line: UInt = #line
  ) throws -> (translated: UInt64, total: UInt64) {
    var translated: UInt64 = 0
    var total: UInt64 = 0
    for seed in seeds {
      let code = program(seed)
      let (a, na, _) = try run(code, translate: false, seed: seed)
      let (b, nb, st) = try run(code, translate: true, seed: seed)
      translated += st["translator.block_instructions"] ?? 0
      total += na
      XCTAssertEqual(na, nb, "seed \(seed): instruction count", file: file, line: line)
      for i in 0..<16 {
        XCTAssertEqual(a[i], b[i], "seed \(seed): register \(i)", file: file, line: line)
      }
      XCTAssertEqual(a.rip, b.rip, "seed \(seed): rip", file: file, line: line)
      XCTAssertEqual(a.rflags, b.rflags, "seed \(seed): rflags", file: file, line: line)
      if lockstep {
        let (_, _, ls) = try run(code, translate: true, seed: seed, lockstep: true)
        XCTAssertEqual(
          ls["translator.lockstep_mismatches"], 0, "seed \(seed): lockstep", file: file, line: line)
      }
      if a != b { break }
    }
    return (translated, total)
  }

  func testRandomCodeMatchesTheInterpreter() throws {
    let (translated, total) = try assertProgramsMatchTheInterpreter(seeds: 1...60, lockstep: false)
    {
      seed in
      var rng = SeededRandom(seed: seed)
      return randomProgram(&rng, length: 1 + Int(seed % 40), loops: UInt32(1 + seed % 300))
    }
    // TEST with the accumulator (A9) is not a decode-cache form, so some code is interpreted.
    XCTAssertGreaterThan(translated, total / 2, "blocks must have run")
  }

  /// Byte registers 4-7 without REX are AH, CH, DH, BH: a loop over them and over
  /// their REX forms (SPL..DIL) retires and computes the same as the interpreter.
  func testHighByteRegisters() throws {
    let code: [UInt8] = [
      0xB9, 0x40, 0, 0, 0,  // mov ecx, 64
      0x00, 0xE0,  // L: add al, ah
      0x30, 0xFB,  // xor bl, bh
      0x28, 0xEE,  // sub dh, ch
      0x88, 0xE2,  // mov dl, ah
      0x40, 0x00, 0xE6,  // add sil, spl
      0x80, 0xC4, 0x07,  // add ah, 7
      0x0F, 0xB6, 0xFF,  // movzx edi, bh
      0x66, 0x01, 0xF8,  // add ax, di
      0xFF, 0xC9,  // dec ecx
      0x75, 0xE8,  // jnz L
      0xF4,
    ]
    var results: [GeneralRegisters] = []
    for translate in [false, true] {
      let m = try machine64(code)
      if translate { try m.cpu.enableTranslation() }
      var s = try m.cpu.getState()
      s.general.rax = 0x1122_3344_5566_7788
      s.general.rbx = 0x99AA_BBCC_DDEE_FF01
      s.general.rdx = 0x0102_0304_0506_0708
      s.general.rsi = 0x0F0E_0D0C_0B0A_0908
      try m.cpu.setState(s)
      results.append(try runToHalt(m))
      if translate {
        XCTAssertGreaterThan(m.cpu.statistics()["translator.block_instructions"] ?? 0, 500)
      }
    }
    XCTAssertEqual(results[0], results[1])
  }

  /// A block whose own bytes an interpreted store changes is translated again (the
  /// interpreter's self-modifying loop: ebx = 1 + 2 + 3).
  func testSelfModifyingLoopRetranslates() throws {
    let code: [UInt8] = [
      0xB9, 3, 0, 0, 0,  // mov ecx,3
      0x31, 0xDB,  // xor ebx,ebx
      0x83, 0xC3, 0x01,  // L: add ebx,1
      0xFE, 0x05, 0xF9, 0xFF, 0xFF, 0xFF,  // inc byte [rip-7] (the add's immediate)
      0xFF, 0xC9,  // dec ecx
      0x75, 0xF3,  // jnz L
      0xF4,
    ]
    let m = try machine64(code)
    try m.cpu.enableTranslation()
    let g = try runToHalt(m)
    XCTAssertEqual(g.rbx, 6)
    let st = m.cpu.statistics()
    XCTAssertGreaterThan(st["translator.retranslations"] ?? 0, 0)
    XCTAssertEqual(st["instructions"], 2 + 4 * 3 + 1)
  }

  /// A batch budget smaller than a looping block stops it exactly: the limit is honoured
  /// to the instruction, as on the interpreter.
  func testInstructionLimitStopsMidLoop() throws {
    var e = X86Encoder()
    let top = e.newLabel()
    e.bind(top)
    e.inc(.rax)
    e.jmp(top)
    for limit: UInt64 in [1, 2, 3, 1001, 4097, 10_000] {
      var o = InterpreterOptions()
      o.maxInstructions = limit
      let m = try machine64(e.bytes, options: o)
      try m.cpu.enableTranslation()
      let stop = try m.cpu.run()
      guard case .instructionLimit(let n) = stop else { return XCTFail("\(stop)") }
      XCTAssertEqual(n, limit)
      let g = try m.cpu.getState().general
      XCTAssertEqual(g.rax, (limit + 1) / 2, "limit \(limit)")
      XCTAssertEqual(g.rip, UnitTests.codeBase + (limit % 2 == 0 ? 0 : 3), "limit \(limit)")
    }
  }

  /// A side exit hands the interpreter exact flags even where the block itself no longer
  /// needs them (a fault there would push them): ROR keeps PF/ZF/SF, and the XOR after it,
  /// which misses the TLB, overwrites every flag, so its TLB check must still keep them.
  func testFlagsAtASideExitAreExact() throws {
    let code: [UInt8] = [
      0x41, 0x88, 0x07,  // mov [r15], al (fills the TLB entries for the next block)
      0x41, 0xC0, 0x0F, 0x03,  // ror byte [r15], 3
      0x48, 0x83, 0x33, 0xFF,  // xor qword [rbx], -1 (a TLB miss: side exit)
      0xF4,
    ]
    for flags in [UInt64(0), RFLAGS.status] {
      let m = try machine64(code)
      try m.cpu.enableTranslation(lockstep: true)
      var s = try m.cpu.getState()
      s.general.r15 = UnitTests.codeBase + 0x10000
      s.general.rbx = UnitTests.codeBase + 0x20000
      s.general.rflags = 2 | flags
      try m.cpu.setState(s)
      _ = try runToHalt(m)
      let st = m.cpu.statistics()
      XCTAssertGreaterThan(st["translator.lockstep_blocks"] ?? 0, 0)
      XCTAssertNil(m.cpu.lockstepReport, "flags \(flags)")
    }
  }

  /// 8192 distinct blocks (ADD; JMP to the next) run three times: each is translated once,
  /// not evicted by collisions and translated again on every pass.
  func manyBlocks(_ m: TestMachine) throws -> [String: UInt64] {
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 3 * 8192)
    return m.cpu.statistics()
  }
  func manyBlocksCode() -> [UInt8] {
    var code: [UInt8] = [0xB9, 3, 0, 0, 0]  // mov ecx,3
    for _ in 0..<8192 { code += [0x48, 0x83, 0xC0, 0x01, 0xEB, 0x00] }  // add rax,1; jmp $+2
    code += [0xFF, 0xC9, 0x0F, 0x85]  // dec ecx; jnz back to the first ADD
    let rel = Int32(5 - (code.count + 4))
    code += withUnsafeBytes(of: rel.littleEndian) { Array($0) }
    code.append(0xF4)
    return code
  }

  func testManyBlocksAreTranslatedOnce() throws {
    let m = try machine64(manyBlocksCode())
    try m.cpu.enableTranslation()
    let st = try manyBlocks(m)
    XCTAssertGreaterThan(st["translator.translations"] ?? 0, 8000)
    XCTAssertLessThanOrEqual(st["translator.translations"] ?? 0, 8192 + 4)
    XCTAssertEqual(st["translator.retranslations"], 0)
    XCTAssertEqual(st["translator.code_flushes"], 0)
  }

  /// A block map smaller than the working set flushes (counted) and stays correct.
  func testFullBlockMapFlushes() throws {
    let m = try machine64(manyBlocksCode())
    m.cpu.translator = try BlockTranslator(capacity: 1000)
    let st = try manyBlocks(m)
    XCTAssertGreaterThanOrEqual(st["translator.code_flushes"] ?? 0, 3 * 8)
    XCTAssertLessThanOrEqual(st["translator.blocks"] ?? .max, 1000)
  }

  /// Chained blocks: the many-blocks guest runs mostly without returning to Swift, with
  /// the same instruction count as the interpreter.
  func testDirectBranchesAreChained() throws {
    let m = try machine64(manyBlocksCode())
    try m.cpu.enableTranslation()
    let st = try manyBlocks(m)
    XCTAssertGreaterThan(st["translator.chains"] ?? 0, 8000)
    // 3 x 8192 blocks ran; Swift entered only where a chain ended (the batch budget, the
    // first pass, page ends).
    XCTAssertLessThan(st["translator.blocks_run"] ?? .max, 8192 + 3 * 8192 / 4)
    let i = try machine64(manyBlocksCode())
    XCTAssertEqual(try runToHalt(i).rax, 3 * 8192)
    XCTAssertEqual(st["instructions"], i.cpu.statistics()["instructions"])
  }

  /// A chained-to block whose bytes an interpreted store changed is not run stale: its
  /// chain entry checks them and hands over to Swift, which translates it again.
  func testChainedBlockSeesItsBytesChange() throws {
    let code: [UInt8] = [
      0xB9, 3, 0, 0, 0,  // mov ecx,3
      0x31, 0xDB,  // xor ebx,ebx
      0xFE, 0x05, 0x04, 0x00, 0x00, 0x00,  // L: inc byte [rip+4] (B's immediate; interpreted)
      0xEB, 0x00,  // jmp B (a block of its own, chained to B)
      0x83, 0xC3, 0x01,  // B: add ebx,1
      0xFF, 0xC9,  // dec ecx
      0x75, 0xF1,  // jnz L
      0xF4,
    ]
    let m = try machine64(code)
    try m.cpu.enableTranslation()
    let g = try runToHalt(m)
    XCTAssertEqual(g.rbx, 2 + 3 + 4)
    let st = m.cpu.statistics()
    XCTAssertGreaterThan(st["translator.chains"] ?? 0, 0)
    XCTAssertGreaterThan(st["translator.retranslations"] ?? 0, 0)
  }

  /// RET finds its return block through the jump cache in host code: a call/return loop
  /// stays out of Swift, with the interpreter's results and instruction count.
  func testReturnsUseTheJumpCache() throws {
    let code: [UInt8] = [
      0xB9, 0x10, 0x27, 0, 0,  // mov ecx,10000
      0xE8, 0x06, 0, 0, 0,  // L: call f
      0xFF, 0xC9,  // dec ecx
      0x75, 0xF7,  // jnz L
      0xF4, 0x90,  // hlt; nop
      0x48, 0x83, 0xC0, 0x01,  // f: add rax,1
      0xC3,  // ret
    ]
    let m = try machine64(code)
    try m.cpu.enableTranslation()
    XCTAssertEqual(try runToHalt(m).rax, 10000)
    let st = m.cpu.statistics()
    XCTAssertLessThan(st["translator.blocks_run"] ?? .max, 1000)
    let i = try machine64(code)
    XCTAssertEqual(try runToHalt(i).rax, 10000)
    XCTAssertEqual(st["instructions"], i.cpu.statistics()["instructions"])
  }

  /// Multi-byte NOPs (0F 1F /0, with 66 and segment prefixes) are translated: a loop
  /// padded with them stays in host code.
  func testMultiByteNopsAreTranslated() throws {
    let code: [UInt8] = [
      0xB9, 0x10, 0x27, 0, 0,  // mov ecx,10000
      0x66, 0x2E, 0x0F, 0x1F, 0x84, 0, 0, 0, 0, 0,  // L: nopw %cs:0(%rax,%rax,1)
      0x0F, 0x1F, 0x40, 0x00,  // nopl 0(%rax)
      0x48, 0x83, 0xC0, 0x01,  // add rax,1
      0xFF, 0xC9,  // dec ecx
      0x75, 0xEA,  // jnz L
      0xF4,
    ]
    let m = try machine64(code)
    try m.cpu.enableTranslation()
    XCTAssertEqual(try runToHalt(m).rax, 10000)
    let st = m.cpu.statistics()
    XCTAssertEqual(st["translator.interpreted_untranslatable"], 1)  // the HLT
    XCTAssertLessThan(st["translator.blocks_run"] ?? .max, 100)
    XCTAssertEqual(st["instructions"], 2 + 5 * 10000)
  }

  /// Runs `code` on the translator and on the interpreter: the same RAX and RBX and the same
  /// instruction count; returns the translator's statistics.
  func compareWithInterpreter(_ code: [UInt8], rax: UInt64) throws -> [String: UInt64] {
    let m = try machine64(code)
    try m.cpu.enableTranslation()
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, rax)
    let i = try machine64(code)
    let h = try runToHalt(i)
    XCTAssertEqual(g.rax, h.rax)
    XCTAssertEqual(g.rbx, h.rbx)
    let st = m.cpu.statistics()
    XCTAssertEqual(st["instructions"], i.cpu.statistics()["instructions"])
    return st
  }

  /// A loop whose two blocks lie on different pages is chained both ways (through the
  /// page entry, which checks the fetch TLB): Swift is entered about once per batch.
  func testBranchesAcrossPagesAreChained() throws {
    var code: [UInt8] = [
      0xB9, 0x10, 0x27, 0, 0,  // mov ecx,10000
      0x48, 0x83, 0xC0, 0x01,  // L: add rax,1
      0xE9, 0xF2, 0x10, 0, 0,  // jmp B (0x1100)
      0xF4,  // E: hlt
    ]
    code += [UInt8](repeating: 0x90, count: 0x1100 - code.count)
    code += [
      0x48, 0x83, 0xC3, 0x01,  // B: add rbx,1
      0xFF, 0xC9,  // dec ecx
      0x0F, 0x85, 0xF9, 0xEE, 0xFF, 0xFF,  // jnz L (5)
      0xE9, 0xFD, 0xEE, 0xFF, 0xFF,  // jmp E (14)
    ]
    let st = try compareWithInterpreter(code, rax: 10000)
    XCTAssertLessThan(st["translator.blocks_run"] ?? .max, 1000)
  }

  /// Indirect CALL and JMP (register and memory operands) go through the jump cache in
  /// host code, as RET does.
  func testIndirectJumpsAndCallsUseTheJumpCache() throws {
    let f = UnitTests.codeBase + 16
    var code: [UInt8] = [
      0xB9, 0x10, 0x27, 0, 0,  // mov ecx,10000
      0xFF, 0x15, 29, 0, 0, 0,  // L: call [rip+slot] (f)
      0xFF, 0xC9,  // dec ecx
      0x75, 0xF6,  // jnz L
      0xF4,  // hlt
      0x48, 0x83, 0xC0, 0x01,  // f: add rax,1
      0x48, 0x8D, 0x15, 5, 0, 0, 0,  // lea rdx,[rip+g]
      0xFF, 0xE2,  // jmp rdx
      0x90, 0x90, 0x90,
      0x48, 0x83, 0xC3, 0x01,  // g: add rbx,1
      0xC3,  // ret
      0x90, 0x90, 0x90,
    ]
    code += withUnsafeBytes(of: f.littleEndian) { Array($0) }  // slot
    let st = try compareWithInterpreter(code, rax: 10000)
    XCTAssertEqual(st["instructions"], 2 + 8 * 10000)
    XCTAssertLessThan(st["translator.blocks_run"] ?? .max, 1000)
  }

  /// Untranslatable instructions are counted by opcode, digit and prefix each time one is
  /// interpreted at a block start (what `--stats` shows to choose the next forms).
  func testUntranslatableInstructionsAreCountedByClass() throws {
    let code: [UInt8] = [
      0x41, 0xB8, 10, 0, 0, 0,  // mov r8d,10
      0x31, 0xC0,  // L: xor eax,eax
      0x0F, 0xA2,  // cpuid
      0x31, 0xC9,  // xor ecx,ecx
      0xF3, 0xAA,  // rep stosb (rcx = 0)
      0x41, 0xFF, 0xC8,  // dec r8d
      0x75, 0xF3,  // jnz L
      0xF4,
    ]
    let m = try machine64(code)
    try m.cpu.enableTranslation()
    _ = try runToHalt(m)
    let st = m.cpu.statistics()
    XCTAssertEqual(st["translator.untranslatable.op_0f_a2"], 10)
    XCTAssertEqual(st["translator.untranslatable.op_aa_rep"], 10)
    XCTAssertEqual(st["translator.untranslatable.op_f4"], 1)
    XCTAssertEqual(st["translator.interpreted_untranslatable"], 21)
    XCTAssertEqual(StopCounts.name(0xF7 << 3 | 6), "translator.untranslatable.op_f7_r6")
    XCTAssertEqual(
      StopCounts.name(3 << 12 | 0x1B1 << 3), "translator.untranslatable.op_0f_b1_lock")
  }
}
