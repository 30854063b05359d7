import CNativeExec
import XCTest

@testable import DiffTest

/// Random bytes in the SSE/MMX/x87 opcode space, run natively and in the
/// interpreter: no host crash, and the same outcome class (completed or the
/// same exception vector at the same RIP) as the silicon for the encodings the
/// interpreter implements. Bytes that decode to instructions the interpreter
/// does not implement (AVX...) must raise #UD there and are skipped when
/// the host executes them.
final class SSERandomBytesTests: XCTestCase {
  func testRandomSSEAndX87BytesDoNotCrashAndAgree() throws {
    #if !(os(Linux) && arch(x86_64))
      throw XCTSkip("needs an x86-64 Linux host")
    #else
      // Opcodes whose every prefix/ModRM combination the interpreter implements
      // (or must reject exactly as the host does).
      let implemented: [UInt8] =
        Array(0x10...0x17) + [0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F]
        + Array(0x50...0x7F) + [0xC2, 0xC4, 0xC5, 0xC6] + Array(0xD0...0xFE)
      try agree(seed: 0x55E_F00D) { rng, i in
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
        return b
      }
    #endif
  }

  /// The 0F 38 and 0F 3A maps (SSSE3, SSE4.1, SSE4.2) under every mandatory prefix.
  func testRandomThreeByteMapBytesAgree() throws {
    #if !(os(Linux) && arch(x86_64))
      throw XCTSkip("needs an x86-64 Linux host")
    #else
      try agree(seed: 0x0F38_0F3A) { rng, _ in
        var b: [UInt8] = []
        switch rng.below(4) {
        case 0: b.append(0x66)
        case 1: b.append(0xF3)
        case 2: b.append(0xF2)
        default: break
        }
        if rng.chance(30) { b.append(UInt8(0x40 | rng.below(16))) }
        let map3A = rng.chance(40)
        b += [0x0F, map3A ? 0x3A : 0x38]
        let ops: [UInt8] =
          map3A
          ? [
            0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x14, 0x15, 0x16, 0x17, 0x20, 0x21,
            0x22, 0x40, 0x41, 0x42, 0x60, 0x61, 0x62, 0x63,
          ]
          : Array(0x00...0x0B) + [0x10, 0x14, 0x15, 0x17, 0x1C, 0x1D, 0x1E] + Array(0x20...0x25)
            + [0x28, 0x29, 0x2B] + Array(0x30...0x35) + Array(0x37...0x41) + [0xF0, 0xF1]
        b.append(rng.pick(ops))
        b.append(UInt8(0xC0 | rng.below(64)))
        if map3A { b.append(UInt8(truncatingIfNeeded: rng.next())) }
        return b
      }
    #endif
  }

  /// Runs 4000 generated register-only snippets natively and in the interpreter.
  private func agree(seed: UInt64, _ bytes: (inout SplitMix, Int) -> [UInt8]) throws {
    var rng = SplitMix(seed)
    let native = NativeRunner(imageSeed: 5)
    let interp = try InterpreterRunner(imageSeed: 5)
    var cases: [nx_case] = []
    for i in 0..<4000 {
      let b = bytes(&rng, i)
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
      if case .exception(6) = o.kind { continue }  // not implemented here: #UD
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
  }
}
