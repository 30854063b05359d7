import CNativeExec
import XCTest

@testable import DiffTest

final class DiffTestTests: XCTestCase {
  override func setUpWithError() throws {
    #if !(os(Linux) && arch(x86_64))
      throw XCTSkip("the differential tester needs an x86-64 Linux host to run snippets natively")
    #endif
  }

  // MARK: Encoder

  func testEncoderKnownBytes() {
    XCTAssertEqual(
      Asm.encode(size: 8, opcode: [0x01], reg: 3, rm: .reg(0)).bytes, [0x48, 0x01, 0xD8])
    // [rbp] needs a zero disp8; [r12] needs a SIB byte.
    var m = MemOperand()
    m.base = 5
    XCTAssertEqual(
      Asm.encode(size: 4, opcode: [0x8B], reg: 0, rm: .mem(m)).bytes, [0x8B, 0x45, 0x00])
    m.base = 12
    XCTAssertEqual(
      Asm.encode(size: 4, opcode: [0x8B], reg: 0, rm: .mem(m)).bytes, [0x41, 0x8B, 0x04, 0x24])
    // SIL needs REX, AH forbids it.
    XCTAssertEqual(
      Asm.encode(size: 1, opcode: [0x88], reg: 6, regIsByte: true, rm: .reg(0), rmIsByte: true)
        .bytes,
      [0x40, 0x88, 0xF0])
    XCTAssertEqual(
      Asm.encode(size: 1, opcode: [0x88], reg: 16, regIsByte: true, rm: .reg(3), rmIsByte: true)
        .bytes,
      [0x88, 0xE3])
    // 16-bit with an index register and disp32.
    m = MemOperand()
    m.base = 0
    m.index = 9
    m.scale = 4
    m.disp = 0x1000
    XCTAssertEqual(
      Asm.encode(size: 2, opcode: [0x01], reg: 1, rm: .mem(m)).bytes,
      [0x66, 0x42, 0x01, 0x8C, 0x88, 0x00, 0x10, 0x00, 0x00])
  }

  func testGeneratorIsReproducible() {
    let t = FormTable()
    let all = t.select(nil)
    for i in 0..<50 {
      let a = Gen.build(seed: caseSeed(7, i), index: i, table: t, enabled: all)
      let b = Gen.build(seed: caseSeed(7, i), index: i, table: t, enabled: all)
      XCTAssertEqual(a.code(), b.code())
      XCTAssertEqual(a.regs, b.regs)
      XCTAssertFalse(a.code().isEmpty)
    }
  }

  // MARK: Native runner

  private func snippet(_ code: [UInt8], regs: [Int: UInt64] = [:], rflags: UInt64 = 2) -> nx_case {
    var c = nx_case()
    withUnsafeMutablePointer(to: &c.in.gpr) {
      $0.withMemoryRebound(to: UInt64.self, capacity: 16) { p in
        for i in 0..<16 { p[i] = regs[i] ?? 0 }
        p[4] = regs[4] ?? 0x3000_0800
      }
    }
    c.in.rflags = rflags
    c.code_len = UInt32(code.count)
    withUnsafeMutableBytes(of: &c.code) { p in for (i, b) in code.enumerated() { p[i] = b } }
    return c
  }

  private var samples: [nx_case] {
    [
      snippet([0x48, 0x01, 0xD8], regs: [0: 5, 3: 7]),  // add rax, rbx
      snippet([0x48, 0xF7, 0xF1], regs: [0: 5, 1: 0]),  // div rcx (#DE)
      snippet([0x48, 0x89, 0x04, 0x25, 0x10, 0x00, 0x00, 0x20], regs: [0: 0x1122]),  // mov [0x20000010], rax
      snippet([0x0F, 0x0B]),  // ud2
      snippet([0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x01, 0x20]),  // mov rax, [0x20010000] (#PF)
      snippet([0xFD, 0x9C, 0x58], rflags: 0x8D5 | 2),  // std; pushfq; pop rax
    ]
  }

  func testNativeRunnerReportsStatesAndFaults() throws {
    let out = try NativeRunner(imageSeed: 1).run(samples + [snippet([0xEB, 0xFE])], timeoutMs: 300)
    XCTAssertEqual(out[0].kind, .completed)
    XCTAssertEqual(out[0].regs[0], 12)
    XCTAssertEqual(out[1].kind, .exception(vector: 0))
    XCTAssertEqual(out[1].faultRIP, Layout.code)
    XCTAssertEqual(out[2].kind, .completed)
    XCTAssertEqual(out[2].diffCount, 1)
    XCTAssertEqual(out[2].diffs.first?.address, 0x2000_0010)
    XCTAssertEqual(out[2].diffs.first?.value, 0x1122)
    XCTAssertEqual(out[3].kind, .exception(vector: 6))
    XCTAssertEqual(out[4].kind, .exception(vector: 14))
    XCTAssertEqual(out[4].faultAddress, 0x2001_0000)
    XCTAssertEqual(out[5].regs[0] & 0xCD5, 0x4D5 | 0x800)
    XCTAssertEqual(out[6].kind, .timeout)
  }

  func testInterpreterAgreesOnSamples() throws {
    let native = try NativeRunner(imageSeed: 1).run(samples)
    let interp = try InterpreterRunner(imageSeed: 1)
    for (k, c) in samples.enumerated() {
      let i = interp.run(c)
      let d = compareOutcomes(
        native: native[k], interpreter: i, undefinedAtEnd: 0, undefinedAnywhere: 0)
      XCTAssertEqual(d, [], "sample \(k)")
    }
  }

  func testComparisonFindsDifferencesAndMasksOnlyUndefinedFlags() throws {
    let native = try NativeRunner(imageSeed: 1).run([samples[0]])[0]
    var other = native
    other.regs[3] ^= 1
    XCTAssertFalse(
      compareOutcomes(native: native, interpreter: other, undefinedAtEnd: 0, undefinedAnywhere: 0)
        .isEmpty)
    other = native
    other.rflags ^= Flag.af
    XCTAssertFalse(
      compareOutcomes(native: native, interpreter: other, undefinedAtEnd: 0, undefinedAnywhere: 0)
        .isEmpty)
    XCTAssertTrue(
      compareOutcomes(
        native: native, interpreter: other, undefinedAtEnd: Flag.af, undefinedAnywhere: 0
      ).isEmpty)
    other = native
    other.rflags ^= 1 << 9  // IF is not compared (user mode vs CPL0)
    XCTAssertTrue(
      compareOutcomes(native: native, interpreter: other, undefinedAtEnd: 0, undefinedAnywhere: 0)
        .isEmpty)
    other = native
    other.kind = .exception(vector: 13)
    XCTAssertFalse(
      compareOutcomes(native: native, interpreter: other, undefinedAtEnd: 0, undefinedAnywhere: 0)
        .isEmpty)
  }

  // MARK: The fixed-seed differential subset

  func testFixedSeedSubsetHasNoMismatches() throws {
    var config = Config()
    config.cases = 3000
    config.seed = 20_261_124
    config.keep = 20
    let run = try DiffRun(config)
    let report = try run.run()
    print(
      "difftest subset: forms covered \(report.formsCovered)/\(report.formsSelected), cases \(report.casesRun), mismatches \(report.mismatchCount)"
    )
    for m in report.mismatches { print(describe(m, disassembly: false)) }
    XCTAssertEqual(report.casesRun, 3000)
    XCTAssertEqual(report.nativeProblems, [])
    XCTAssertGreaterThan(report.formsCovered, report.formsSelected * 9 / 10)
    XCTAssertEqual(
      report.mismatchCount, 0, "interpreter differs from the host CPU; see the cases printed above")
  }

  /// The integer forms the translator compiles, run through the translator engine (blocks
  /// translated on first execution) in lockstep with the interpreter: no difference from
  /// the host CPU, none from the interpreter, and most instructions ran in translated code.
  func testTranslatorSubsetHasNoMismatches() throws {
    var config = Config()
    config.cases = 3000
    config.seed = 20_261_203
    config.keep = 20
    config.translate = true
    config.lockstep = true
    let re = try Regex(
      "^(add|or|adc|sbb|and|sub|xor|cmp|test|mov|movzx|lea|inc|dec|imul|shl|shr|sar|sal|rol|ror|rcl|rcr|push|pop|call|ret|nop|j[a-z]+) [^,]*(,[^,]*)?$"
    )
    config.formFilter = { (try? re.wholeMatch(in: $0)) != nil }
    let run = try DiffRun(config)
    let report = try run.run()
    print(
      "difftest translator subset: forms \(report.formsCovered)/\(report.formsSelected), cases \(report.casesRun), mismatches \(report.mismatchCount), translated instructions \(report.translatedInstructions), lockstep blocks \(report.lockstepBlocks) differences \(report.lockstepMismatches)"
    )
    for m in report.mismatches { print(describe(m, disassembly: false)) }
    XCTAssertEqual(report.nativeProblems, [])
    XCTAssertGreaterThan(report.formsSelected, 200)
    XCTAssertGreaterThan(report.translatedInstructions, UInt64(report.casesRun))
    XCTAssertGreaterThan(report.lockstepBlocks, 1000)
    XCTAssertEqual(report.mismatchCount, 0)
    XCTAssertEqual(report.lockstepMismatches, 0, report.firstLockstepReport ?? "")
  }
}
