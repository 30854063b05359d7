import Engine
import Memory
import TestSupport
import X86
import XCTest

@testable import Interpreter

/// Hostile code through the translator in long mode, where it compiles memory operands
/// and the stack: random bytes biased towards the forms it translates, with registers
/// pointing anywhere in RAM (stores into the running code included), looping until a
/// fault or the instruction limit. The host never crashes or hangs, and every case ends
/// exactly as on the interpreter (exit, registers, flags, count and RAM).
final class TranslatorHostileCodeTests: XCTestCase {
  static let ramMiB: UInt64 = 4
  static let codeBase: UInt64 = 0x100000
  /// Opcode bytes the translator handles (ALU, MOV, LEA, TEST, PUSH/POP, Jcc, CALL, RET,
  /// group 1/2/3/5 and 0F B6/B7/AF), mixed with REX prefixes and ModRM-like bytes.
  static let favoured: [UInt8] = [
    0x48, 0x49, 0x4C, 0x4D, 0x01, 0x03, 0x09, 0x0B, 0x11, 0x19, 0x21, 0x29, 0x31, 0x33, 0x39,
    0x3B, 0x85, 0x89, 0x8B, 0x8D, 0x81, 0x83, 0xC1, 0xD1, 0xD3, 0xC7, 0xFF, 0xF7, 0x50, 0x53,
    0x58, 0x5B, 0x74, 0x75, 0x7C, 0xEB, 0xE8, 0xC3, 0x0F, 0xB6, 0xAF, 0x90, 0x04, 0x44, 0x84,
  ]

  func run(_ code: [UInt8], seed: UInt64, translate: Bool) throws -> (
    String, GeneralRegisters, UInt64, Data, UInt64
  ) {
    var options = InterpreterOptions()
    options.maxInstructions = 20_000
    let m = try TestMachine(ramMiB: Self.ramMiB, options: options)
    // The code loops: a JMP back to its start follows it.
    let back = Int32(-(code.count + 5))
    let jmp: [UInt8] = [0xE9] + withUnsafeBytes(of: back.littleEndian) { Array($0) }
    try m.load(code + jmp, at: Self.codeBase)
    try m.setLongMode(rip: Self.codeBase)
    if translate { try m.cpu.enableTranslation() }
    var rng = SeededRandom(seed: seed ^ 0xBAD)
    var s = try m.cpu.getState()
    for i in 0..<16 where i != 4 {
      // Mostly addresses in RAM (the code page among them), some anything at all.
      let r = rng.next()
      s.general[i] =
        r % 8 == 0
        ? rng.next()
        : (r % 8 == 1 ? Self.codeBase + rng.next() % 0x1000 : rng.next() % (Self.ramMiB << 20))
    }
    s.general.rsp = 0x80000 + rng.next() % 0x1000
    s.general.rflags = 2 | (rng.next() & RFLAGS.status)
    try m.cpu.setState(s)
    let stop = try m.run(maxExits: 1000)
    let g = try m.cpu.getState().general
    let ram = Data(try m.memory.readBytes(GuestPhysicalAddress(0), count: Int(Self.ramMiB << 20)))
    let st = m.cpu.statistics()
    return ("\(stop)", g, st["instructions"] ?? 0, ram, st["translator.block_instructions"] ?? 0)
  }

  func testRandomLongModeCodeEndsAsOnTheInterpreter() throws {
    var translated: UInt64 = 0
    for seed in UInt64(1)...150 {
      var rng = SeededRandom(seed: seed)
      let code = (0..<256).map { _ in
        rng.next() % 3 == 0
          ? UInt8.random(in: 0...255, using: &rng)
          : Self.favoured[Int(rng.next() % UInt64(Self.favoured.count))]
      }
      let a = try run(code, seed: seed, translate: false)
      let b = try run(code, seed: seed, translate: true)
      XCTAssertEqual(a.0, b.0, "seed \(seed): how the run ended")
      XCTAssertEqual(a.2, b.2, "seed \(seed): instructions retired")
      for i in 0..<16 { XCTAssertEqual(a.1[i], b.1[i], "seed \(seed): register \(i)") }
      XCTAssertEqual(a.1.rip, b.1.rip, "seed \(seed): rip")
      XCTAssertEqual(a.1.rflags, b.1.rflags, "seed \(seed): rflags")
      XCTAssertEqual(a.3, b.3, "seed \(seed): RAM")
      if a.0 != b.0 || a.1 != b.1 || a.3 != b.3 { break }
      translated += b.4
    }
    XCTAssertGreaterThan(translated, 10_000, "the translator barely ran")
  }
}
