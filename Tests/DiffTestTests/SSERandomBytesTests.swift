import CNativeExec
import XCTest

@testable import DiffTest

/// Random bytes in the SSE/MMX/x87 opcode space, run natively and in the
/// interpreter: no host crash, and the same outcome class (completed or the
/// same exception vector at the same RIP) as the silicon for the encodings the
/// interpreter implements. Bytes that decode to instructions the interpreter
/// does not implement (SSE3+, AVX...) must raise #UD there and are skipped when
/// the host executes them.
final class SSERandomBytesTests: XCTestCase {
  func testRandomSSEAndX87BytesDoNotCrashAndAgree() throws {
    #if !(os(Linux) && arch(x86_64))
      throw XCTSkip("needs an x86-64 Linux host")
    #else
      var rng = SplitMix(0x55E_F00D)
      let native = NativeRunner(imageSeed: 5)
      let interp = try InterpreterRunner(imageSeed: 5)
      var cases: [nx_case] = []
      // Opcodes whose every prefix/ModRM combination the interpreter implements
      // (or must reject exactly as the host does).
      let implemented: [UInt8] =
        Array(0x10...0x17) + [0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F]
        + Array(0x50...0x7F) + [0xC2, 0xC4, 0xC5, 0xC6] + Array(0xD1...0xFE)
      for i in 0..<4000 {
        var b: [UInt8] = []
        let escape = i % 3 == 0
        if escape {
          b.append(UInt8(0xD8 + rng.below(8)))
        } else {
          switch rng.below(4) {
          case 0: b.append(0x66)
          case 1: b.append(0xF3)
          case 2: b.append(0xF2)
          default: break
          }
          if rng.chance(30) { b.append(UInt8(0x40 | rng.below(16))) }
          b.append(0x0F)
          b.append(rng.pick(implemented))
        }
        // Register-only ModRM (memory operands would address unmapped memory
        // at random; the generator's forms cover memory).
        if b.last != 0x77 || escape { b.append(UInt8(0xC0 | rng.below(64))) }  // EMMS: no ModRM
        if !escape, [0x70, 0x71, 0x72, 0x73, 0xC2, 0xC4, 0xC5, 0xC6].contains(b[b.count - 2]) {
          b.append(UInt8(truncatingIfNeeded: rng.next()))  // imm8
        }
        var c = nx_case()
        withUnsafeMutablePointer(to: &c.in.gpr) {
          $0.withMemoryRebound(to: UInt64.self, capacity: 16) { p in
            for r in 0..<16 { p[r] = rng.next() }
            p[4] = Layout.stack + 0x800
          }
        }
        let fx = FX.initialImage(seed: rng.next())
        withUnsafeMutableBytes(of: &c.in.fx) { p in for k in 0..<512 { p[k] = fx[k] } }
        c.code_len = UInt32(b.count)
        withUnsafeMutableBytes(of: &c.code) { p in for (k, x) in b.enumerated() { p[k] = x } }
        cases.append(c)
      }
      let nat = try native.run(cases)
      var compared = 0
      for (k, c) in cases.enumerated() {
        let o = interp.run(c)
        if case .failure(let m) = o.kind { XCTFail("case \(k): interpreter failure \(m)") }
        if case .exception(6) = o.kind { continue }  // not implemented here (SSE3+): #UD
        let d = compareOutcomes(
          native: nat[k], interpreter: o, undefinedAtEnd: 0, undefinedAnywhere: 0,
          fswUndefined: 0x4500)
        if !d.isEmpty {
          XCTFail(
            "case \(k) bytes \(withUnsafeBytes(of: c.code) { Array($0.prefix(Int(c.code_len))) }): \(d)"
          )
        }
        compared += 1
      }
      XCTAssertGreaterThan(compared, 1000)
    #endif
  }
}
