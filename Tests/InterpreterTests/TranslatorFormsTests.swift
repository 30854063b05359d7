import TestSupport
import Translator
import X86
import XCTest

@testable import Interpreter

/// The integer forms translated beyond the first stage (sign extension, conditional moves
/// and sets, LEAVE, ...) against the interpreter, on random programs as in TranslatorTests.
extension TranslatorTests {
  /// Random code mixing flag-setting ALU instructions with the newer forms, register and
  /// memory operands, in a counted loop, then HLT.
  func formsProgram(_ rng: inout SeededRandom, length: Int, loops: UInt32) -> [UInt8] {
    var e = X86Encoder()
    // rcx counts the loop and r15 points at the data area: neither is a random destination.
    let regs = HostReg.allCases.filter { $0 != .rcx && $0 != .rsp && $0 != .r15 }
    func pick() -> HostReg { regs[Int(rng.next() % UInt64(regs.count))] }
    e.movImm(.rcx, UInt64(loops))
    let top = e.newLabel()
    e.bind(top)
    for _ in 0..<length {
      let s = [OpSize.b16, .b32, .b64][Int(rng.next() % 3)]
      let a = pick()
      let b = pick()
      let c = Cond.allCases[Int(rng.next() % 16)]
      let disp = Int32(rng.next() % 0x1FF8)
      let m = HostMem(.r15, rng.next() % 4 == 0 ? 0xFFC + Int32(rng.next() % 4) : disp)
      // A sign extension from `from` to `wide` bytes (MOVSXD only to 64 bits).
      let from = [OpSize.b8, .b16, .b32][Int(rng.next() % 3)]
      let wide: OpSize = from == .b32 ? .b64 : from == .b16 && s == .b16 ? .b32 : s
      let s8 = rng.next() % 4 == 0 ? OpSize.b8 : s
      switch rng.next() % 16 {
      case 0: e.alu(ALUOp(rawValue: UInt8(rng.next() % 8))!, a, b, s)
      case 1: e.alu(.cmp, a, imm: Int32(truncatingIfNeeded: rng.next() % 256) - 128, s)
      case 2: e.cmov(c, a, b, s)
      case 3: e.cmov(c, a, m, s)
      case 4: e.setcc(c, a)
      case 5: e.setcc(c, m)
      case 6: e.movsx(a, b, from, wide)
      case 7: e.loadSX(a, m, from, wide)
      case 8:
        // A frame: push rbp; mov rbp, rsp; ...; leave.
        e.push(.rbp)
        e.mov(.rbp, .rsp)
        e.push(a)
        e.pop(b == .rbp ? .rax : b)  // the frame pointer must survive to LEAVE
        e.leave()
      case 9: e.store(m, a, s)
      case 10: e.test(a, b, s)
      case 12: if rng.next() & 1 == 0 { e.not(a, s8) } else { e.neg(a, s8) }
      case 13: if rng.next() & 1 == 0 { e.not(m, s8) } else { e.neg(m, s8) }
      case 14: e.test(.rax, imm: Int32(truncatingIfNeeded: rng.next()), s8)
      default: e.alu(.sub, a, m, s)
      }
    }
    e.dec(.rcx)
    e.jcc(.ne, top)
    e.alu(.adc, .rax, .rbx)
    var bytes = e.bytes
    bytes.append(0xF4)  // hlt
    return bytes
  }

  func testMoreFormsMatchTheInterpreter() throws {
    let (translated, total) = try assertProgramsMatchTheInterpreter(seeds: 1...50, lockstep: true) {
      seed in
      var rng = SeededRandom(seed: seed &* 7919)
      return formsProgram(&rng, length: 1 + Int(seed % 30), loops: UInt32(1 + seed % 200))
    }
    XCTAssertGreaterThan(translated, total * 3 / 4, "blocks must have run")
  }
}
