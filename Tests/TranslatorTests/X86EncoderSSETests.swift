import XCTest

@testable import Translator

/// Golden tests for X86EncoderSSE.swift, against llvm-mc as in X86EncoderTests.
extension X86EncoderTests {
  func sseCases() -> [(String, [UInt8])] {
    collect { add in
      // Register forms over every XMM pair (REX.R and REX.B), with and without a prefix.
      for a in UInt8(0)..<16 {
        for b in UInt8(0)..<16 where (a + b) % 3 == 0 {
          add("pxor xmm\(a), xmm\(b)") { $0.sse(0x66, 0xEF, reg: a, rm: b) }
          add("xorps xmm\(a), xmm\(b)") { $0.sse(nil, 0x57, reg: a, rm: b) }
          add("movss xmm\(a), xmm\(b)") { $0.sse(0xF3, 0x10, reg: a, rm: b) }
          add("movsd xmm\(a), xmm\(b)") { $0.sse(0xF2, 0x10, reg: a, rm: b) }
          add("pshufd xmm\(a), xmm\(b), 27") { $0.sse(0x66, 0x70, reg: a, rm: b, imm: 27) }
        }
        let r = HostReg.allCases[Int(a)]
        add("pmovmskb \(name(r, .b32)), xmm\(15 - a)") { $0.sse(0x66, 0xD7, reg: a, rm: 15 - a) }
        add("movq \(name(r, .b64)), xmm\(a)") { $0.sse(0x66, 0x7E, reg: a, rm: a, w: true) }
        add("movd \(name(r, .b32)), xmm\(15 - a)") { $0.sse(0x66, 0x7E, reg: 15 - a, rm: a) }
        // (llvm-mc encodes MOVQ xmm, m64 as F3 0F 7E: only the register form is unambiguous.)
        add("movq xmm\(15 - a), \(name(r, .b64))") {
          $0.sse(0x66, 0x6E, reg: 15 - a, rm: a, w: true)
        }
        add("psrldq xmm\(a), 4") { $0.sse(0x66, 0x73, reg: 3, rm: a, imm: 4) }
      }
      for m in memories {
        for x in [UInt8(0), 1, 9, 15] {
          add("movdqu xmm\(x), xmmword ptr \(text(m))") { $0.movdqu(xmm: x, m) }
          add("movdqu xmmword ptr \(text(m)), xmm\(x)") { $0.movdqu(m, xmm: x) }
          add("pcmpeqb xmm\(x), xmmword ptr \(text(m))") { $0.sse(0x66, 0x74, reg: x, mem: m) }
          add("movd xmm\(x), dword ptr \(text(m))") { $0.sse(0x66, 0x6E, reg: x, mem: m) }
          add("pshufhw xmm\(x), xmmword ptr \(text(m)), 200") {
            $0.sse(0xF3, 0x70, reg: x, mem: m, imm: 200)
          }
        }
      }
    }
  }

  func testSSEFormsMatchTheAssembler() throws {
    try assertMatchesAssembler(sseCases())
  }
}
