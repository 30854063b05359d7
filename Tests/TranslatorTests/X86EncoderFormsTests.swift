import XCTest

@testable import Translator

/// Golden tests for X86EncoderForms.swift, against llvm-mc as in X86EncoderTests.
extension X86EncoderTests {
  func formCases() -> [(String, [UInt8])] {
    collect { add in
      for s in [OpSize.b16, .b32, .b64] {
        for a in regs {
          for b in regs {
            for c in Cond.allCases where (a.rawValue + b.rawValue) % 4 == c.rawValue % 4 {
              add("cmov\(c) \(name(a, s)), \(name(b, s))") { $0.cmov(c, a, b, s) }
            }
            for imm: Int32 in [0, 1, -1, 127, -128, 128, -32768, 0x7FFF, 1000]
            where (a.rawValue ^ b.rawValue) & 1 == UInt8(imm & 1) {
              let v = s == .b16 ? Int32(Int16(truncatingIfNeeded: imm)) : imm
              add("imul \(name(a, s)), \(name(b, s)), \(v)") { $0.imul(a, b, imm: v, s) }
            }
            if s != .b16 {
              add("imul \(name(a, s)), \(name(b, s)), 305419896") {
                $0.imul(a, b, imm: 0x1234_5678, s)
              }
            }
            for op in BitOp.allCases {
              add("\(op) \(name(a, s)), \(name(b, s))") { $0.bit(op, a, b, s) }
            }
            add("movsx \(name(a, s)), \(name(b, .b8))") { $0.movsx(a, b, .b8, s) }
            if s != .b16 {
              add("movsx \(name(a, s)), \(name(b, .b16))") { $0.movsx(a, b, .b16, s) }
            }
            if s == .b64 {
              add("movsxd \(name(a, s)), \(name(b, .b32))") { $0.movsx(a, b, .b32, s) }
            }

          }
          for op in BitOp.allCases {
            for n: UInt8 in [0, 5, 31, 63] {
              add("\(op) \(name(a, s)), \(n)") { $0.bit(op, a, imm: n, s) }
            }
          }
        }
        for m in memories {
          for r in [HostReg.rax, .rcx, .rsp, .rdi, .r8, .r10, .r15] {
            add("movsx \(name(r, s)), byte ptr \(text(m))") { $0.loadSX(r, m, .b8, s) }
            if s != .b16 {
              add("movsx \(name(r, s)), word ptr \(text(m))") { $0.loadSX(r, m, .b16, s) }
            }
            if s == .b64 {
              add("movsxd \(name(r, s)), dword ptr \(text(m))") { $0.loadSX(r, m, .b32, s) }
            }
            let c = Cond.allCases[Int(r.rawValue + m.base.rawValue) % 16]
            add("cmov\(c) \(name(r, s)), \(ptr(s))\(text(m))") { $0.cmov(c, r, m, s) }
            if s == .b64 { add("set\(c) byte ptr \(text(m))") { $0.setcc(c, m) } }
          }
        }
      }
      add("leave") { $0.leave() }
      for r in regs {
        add("bswap \(name(r, .b32))") { $0.bswap(r, .b32) }
        add("bswap \(name(r, .b64))") { $0.bswap(r, .b64) }
        for s in [OpSize.b16, .b32, .b64] {
          let b = regs[(Int(r.rawValue) * 7 + 3) % 16]
          add("bsf \(name(r, s)), \(name(b, s))") { $0.bitScan(reverse: false, r, b, s) }
          add("bsr \(name(b, s)), \(name(r, s))") { $0.bitScan(reverse: true, b, r, s) }
        }
      }
      for s in OpSize.allCases {
        for m in memories {
          add("not \(ptr(s))\(text(m))") { $0.not(m, s) }
          add("neg \(ptr(s))\(text(m))") { $0.neg(m, s) }
        }
      }
      for (t, s) in [("cwd", OpSize.b16), ("cdq", .b32), ("cqo", .b64)] {
        add(t) { $0.cdq(s) }
      }
      for (t, s) in [("cbw", OpSize.b16), ("cwde", .b32), ("cdqe", .b64)] {
        add(t) { $0.cdqe(s) }
      }
      for s in OpSize.allCases {
        for r in regs {
          add("mul \(name(r, s))") { $0.mul(r, s) }
          add("imul \(name(r, s))") { $0.imul1(r, s) }
          add("div \(name(r, s))") { $0.div(r, s) }
          add("idiv \(name(r, s))") { $0.idiv(r, s) }
          for b in [HostReg.rax, .rcx, .rsi, .r8, .r15] where b != r {
            add("cmpxchg \(name(r, s)), \(name(b, s))") { $0.cmpxchg(r, b, s) }
            add("xadd \(name(r, s)), \(name(b, s))") { $0.xadd(r, b, s) }
          }
        }
        for m in memories {
          for r in [HostReg.rax, .rdx, .rsp, .rdi, .r9, .r13] {
            add("cmpxchg \(ptr(s))\(text(m)), \(name(r, s))") { $0.cmpxchg(m, r, s) }
            add("xadd \(ptr(s))\(text(m)), \(name(r, s))") { $0.xadd(m, r, s) }
            add("lock cmpxchg \(ptr(s))\(text(m)), \(name(r, s))") {
              $0.cmpxchg(m, r, s, lock: true)
            }
            add("lock xadd \(ptr(s))\(text(m)), \(name(r, s))") { $0.xadd(m, r, s, lock: true) }
          }
        }
      }
    }
  }

  func testMoreFormsMatchTheAssembler() throws {
    try assertMatchesAssembler(formCases())
  }
}
