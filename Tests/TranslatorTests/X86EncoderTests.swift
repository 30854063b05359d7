import Foundation
import XCTest

@testable import Translator

/// Golden tests: every form the encoder emits, over registers, sizes, scales, displacements
/// and immediates, against what the toolchain's assembler (llvm-mc) encodes for the same text.
final class X86EncoderTests: XCTestCase {
  static let names64 = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
  ]
  static let names32 = [
    "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "r8d", "r9d", "r10d", "r11d", "r12d",
    "r13d", "r14d", "r15d",
  ]
  static let names16 = [
    "ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8w", "r9w", "r10w", "r11w", "r12w", "r13w",
    "r14w", "r15w",
  ]
  static let names8 = [
    "al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil", "r8b", "r9b", "r10b", "r11b", "r12b",
    "r13b", "r14b", "r15b",
  ]

  func name(_ r: HostReg, _ s: OpSize) -> String {
    switch s {
    case .b8: return Self.names8[Int(r.rawValue)]
    case .b16: return Self.names16[Int(r.rawValue)]
    case .b32: return Self.names32[Int(r.rawValue)]
    case .b64: return Self.names64[Int(r.rawValue)]
    }
  }

  func ptr(_ s: OpSize) -> String {
    ["byte", "word", "", "dword", "", "", "", "qword"][s.rawValue - 1] + " ptr "
  }

  func text(_ m: HostMem) -> String {
    var t = "[" + name(m.base, .b64)
    if let i = m.index { t += " + \(m.scale)*" + name(i, .b64) }
    if m.disp != 0 { t += m.disp < 0 ? " - \(-Int64(m.disp))" : " + \(m.disp)" }
    return t + "]"
  }

  /// Memory operands covering every base (SIB for rsp/r12, disp8 for rbp/r13), every
  /// index, every scale, and disp 0 / disp8 / disp32 of both signs.
  var memories: [HostMem] {
    var out: [HostMem] = []
    for b in HostReg.allCases {
      for d: Int32 in [0, 8, -128, 127, 128, -4096, 0x1234_5678] { out.append(HostMem(b, d)) }
    }
    for (n, i) in HostReg.allCases.filter({ $0 != .rsp }).enumerated() {
      let b = HostReg.allCases[(n * 5 + 3) % 16]
      let scale = UInt8(1 << (n % 4))
      out.append(HostMem(b, 0, index: i, scale: scale))
      out.append(HostMem(b, -8, index: i, scale: scale))
      out.append(HostMem(.rbp, 0, index: i, scale: 8))
      out.append(HostMem(.r13, 0x100, index: i, scale: 2))
    }
    return out
  }

  let immediates: [Int32] = [0, 1, -1, 127, -128, 128, 1000, -32768, 0x7FFF_FFFF, Int32.min]
  let regs = HostReg.allCases

  /// (assembler text, what our encoder produced for it) pairs, from `add(text) { encoder }`
  /// calls in `build`: every golden-test file's cases go through here.
  func collect(
    _ build: (_ add: (String, (inout X86Encoder) -> Void) -> Void) -> Void
  ) -> [(String, [UInt8])] {
    var out: [(String, [UInt8])] = []
    build { t, body in
      var e = X86Encoder()
      body(&e)
      out.append((t, e.bytes))
    }
    return out
  }

  /// The cases: the assembler text, and what our encoder produced for it.
  func cases() -> [(String, [UInt8])] {
    collect { add in
      let sizes = OpSize.allCases
      for s in sizes {
        for a in regs {
          for b in regs {
            add("mov \(name(a, s)), \(name(b, s))") { $0.mov(a, b, s) }
            for op in ALUOp.allCases {
              add("\(op) \(name(a, s)), \(name(b, s))") { $0.alu(op, a, b, s) }
            }
            add("test \(name(a, s)), \(name(b, s))") { $0.test(a, b, s) }
            if s != .b8 { add("imul \(name(a, s)), \(name(b, s))") { $0.imul(a, b, s) } }
          }
          for imm in immediates {
            let v =
              s == .b8
              ? Int32(Int8(truncatingIfNeeded: imm))
              : s == .b16 ? Int32(Int16(truncatingIfNeeded: imm)) : imm
            for op in ALUOp.allCases {
              add("\(op) \(name(a, s)), \(v)") { $0.alu(op, a, imm: v, s) }
            }
            add("test \(name(a, s)), \(v)") { $0.test(a, imm: v, s) }
          }
          for (op, t) in [("inc", 0), ("dec", 1), ("not", 2), ("neg", 3)] {
            add("\(op) \(name(a, s))") { e in
              switch t {
              case 0: e.inc(a, s)
              case 1: e.dec(a, s)
              case 2: e.not(a, s)
              default: e.neg(a, s)
              }
            }
          }
          for op in ShiftOp.allCases {
            for n: UInt8 in [1, 2, 31] {
              add("\(op) \(name(a, s)), \(n)") { $0.shift(op, a, imm: n, s) }
            }
            add("\(op) \(name(a, s)), cl") { $0.shiftCL(op, a, s) }
          }
        }
        for m in memories {
          for r in [HostReg.rax, .rcx, .rsp, .rdi, .r8, .r15] {
            add("mov \(name(r, s)), \(ptr(s))\(text(m))") { $0.load(r, m, s) }
            add("mov \(ptr(s))\(text(m)), \(name(r, s))") { $0.store(m, r, s) }
            for op in [ALUOp.add, .sub, .cmp, .xor] {
              add("\(op) \(name(r, s)), \(ptr(s))\(text(m))") { $0.alu(op, r, m, s) }
              add("\(op) \(ptr(s))\(text(m)), \(name(r, s))") { $0.alu(op, m, r, s) }
            }
          }
          for imm: Int32 in [5, -100, 1000] {
            let v = s == .b8 ? Int32(Int8(truncatingIfNeeded: imm)) : imm
            add("mov \(ptr(s))\(text(m)), \(v)") { $0.storeImm(m, v, s) }
            add("and \(ptr(s))\(text(m)), \(v)") { $0.alu(.and, m, imm: v, s) }
          }
        }
      }
      for r in regs {
        for v: UInt64 in [
          0, 1, 0xFFFF_FFFF, 0x1_0000_0000, 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_8000_0000,
          0x8000_0000_0000_0000,
        ] {
          let t: String
          if v <= 0xFFFF_FFFF {
            t = "mov \(name(r, .b32)), \(v)"
          } else if Int64(bitPattern: v) >= Int64(Int32.min) && Int64(bitPattern: v) < 0 {
            t = "mov \(name(r, .b64)), \(Int64(bitPattern: v))"
          } else {
            t = "movabs \(name(r, .b64)), \(v)"
          }
          add(t) { $0.movImm(r, v) }
        }
        for m in memories.prefix(40) {
          add("lea \(name(r, .b64)), \(text(m))") { $0.lea(r, m) }
          add("lea \(name(r, .b32)), \(text(m))") { $0.lea(r, m, .b32) }
          add("movzx \(name(r, .b32)), byte ptr \(text(m))") { $0.loadZX(r, m, .b8) }
          add("movzx \(name(r, .b32)), word ptr \(text(m))") { $0.loadZX(r, m, .b16) }
        }
        for c in Cond.allCases { add("set\(c) \(name(r, .b8))") { $0.setcc(c, r) } }
        add("push \(name(r, .b64))") { $0.push(r) }
        add("pop \(name(r, .b64))") { $0.pop(r) }
        add("call \(name(r, .b64))") { $0.call(r) }
        add("jmp \(name(r, .b64))") { $0.jmp(r) }
      }
      add("lahf") { $0.lahf() }
      add("sahf") { $0.sahf() }
      add("pushfq") { $0.pushfq() }
      add("popfq") { $0.popfq() }
      add("ret") { $0.ret() }
    }
  }

  static func tool(_ name: String) -> String? {
    let dirs =
      (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
      + ["/usr/bin", "/usr/lib/llvm-14/bin", "/usr/lib/llvm-15/bin", "/usr/lib/llvm-16/bin"]
    return dirs.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }

  /// Assembles Intel-syntax lines with llvm-mc; returns each instruction's encoding.
  func assemble(_ lines: [String]) throws -> [[UInt8]] {
    guard let mc = Self.tool("llvm-mc") else { throw XCTSkip("llvm-mc not installed") }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "x86enc-\(getpid())-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let src = dir.appendingPathComponent("in.s")
    try (".intel_syntax noprefix\n" + lines.joined(separator: "\n") + "\n").write(
      to: src, atomically: true, encoding: .utf8)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: mc)
    p.arguments = ["-triple=x86_64-unknown-linux-gnu", "-show-encoding", src.path]
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    XCTAssertEqual(
      p.terminationStatus, 0, String(decoding: errData, as: UTF8.self).prefix(2000).description)
    var result: [[UInt8]] = []
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
      guard let r = line.range(of: "encoding: [") else { continue }
      let body = line[r.upperBound...].prefix { $0 != "]" }
      result.append(
        body.split(separator: ",").map { UInt8($0.dropFirst(2), radix: 16)! })
    }
    return result
  }

  func testEveryFormMatchesTheAssembler() throws {
    try assertMatchesAssembler(cases())
  }

  /// Each (assembly text, our bytes) pair against llvm-mc's encoding of the text.
  func assertMatchesAssembler(_ c: [(String, [UInt8])]) throws {
    XCTAssertGreaterThan(c.count, 100, "too few cases to be a golden test")
    let golden = try assemble(c.map(\.0))
    XCTAssertEqual(golden.count, c.count, "llvm-mc returned a different number of encodings")
    var mismatches = 0
    for (i, (t, ours)) in c.enumerated() where i < golden.count && golden[i] != ours {
      mismatches += 1
      if mismatches <= 20 {
        XCTFail(
          "\(t): ours \(ours.map { String(format: "%02x", $0) }) llvm-mc \(golden[i].map { String(format: "%02x", $0) })"
        )
      }
    }
    XCTAssertEqual(mismatches, 0, "of \(c.count) forms")
  }

  /// Disassembles bytes with llvm-mc; returns one "mnemonic operands" line per instruction.
  func disassemble(_ bytes: [UInt8]) throws -> [String] {
    guard let mc = Self.tool("llvm-mc") else { throw XCTSkip("llvm-mc not installed") }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: mc)
    p.arguments = ["--disassemble", "-triple=x86_64-unknown-linux-gnu", "-output-asm-variant=1"]
    let inp = Pipe()
    let out = Pipe()
    p.standardInput = inp
    p.standardOutput = out
    try p.run()
    inp.fileHandleForWriting.write(
      Data(bytes.map { String(format: "0x%02x", $0) }.joined(separator: " ").utf8))
    try inp.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self).split(separator: "\n")
      .map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty && !$0.hasPrefix(".") }
  }

  /// Labels: forward and backward rel32 jumps land on their targets, and the toolchain's
  /// disassembler reads the same instructions with the same displacements.
  func testLabelsResolveToTheirTargets() throws {
    var e = X86Encoder()
    let back = e.newLabel()
    let fwd = e.newLabel()
    e.bind(back)
    e.jcc(.ne, fwd)  // 0..6
    e.jmp(back)  // 6..11
    for _ in 0..<3 { e.inc(.rax) }  // 11..20
    e.jcc(.l, back)  // 20..26
    e.bind(fwd)
    e.ret()  // 26
    XCTAssertTrue(e.isResolved)
    func rel(_ at: Int) -> Int32 {
      Int32(
        bitPattern: UInt32(e.bytes[at]) | UInt32(e.bytes[at + 1]) << 8 | UInt32(e.bytes[at + 2])
          << 16 | UInt32(e.bytes[at + 3]) << 24)
    }
    XCTAssertEqual(rel(2), 26 - 6)
    XCTAssertEqual(rel(7), 0 - 11)
    XCTAssertEqual(rel(22), 0 - 26)
    let text = try disassemble(e.bytes)
    XCTAssertEqual(
      text.map { $0.replacingOccurrences(of: "\t", with: " ") },
      ["jne 20", "jmp -11", "inc rax", "inc rax", "inc rax", "jl -26", "ret"])
  }
}
