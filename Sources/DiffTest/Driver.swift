import CNativeExec
import Foundation

/// Compares a native outcome (the reference) with the interpreter's.
/// Returns the differences, empty when they agree.
public func compareOutcomes(
  native n: Outcome, interpreter i: Outcome, undefinedAtEnd: UInt64, undefinedAnywhere: UInt64,
  fswUndefined: UInt16 = 0
) -> [String] {
  var out: [String] = []
  func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
  func describe(_ o: Outcome) -> String {
    switch o.kind {
    case .completed: return "completed"
    case .exception(let v):
      var s = "\(vectorName(v)) at rip \(hex(o.faultRIP))"
      if v == 14 { s += " addr \(hex(o.faultAddress))" }
      return s
    case .timeout: return "timeout"
    case .failure(let m): return "failure: \(m)"
    }
  }
  var mask = UInt64(NX_FLAGS_COMPARED)
  switch (n.kind, i.kind) {
  case (.completed, .completed):
    mask &= ~undefinedAtEnd
  case (.exception(let a), .exception(let b)):
    if a != b || n.faultRIP != i.faultRIP || (a == 14 && n.faultAddress != i.faultAddress) {
      out.append("exception: native \(describe(n)), interpreter \(describe(i))")
    }
    mask &= ~undefinedAnywhere
  default:
    out.append("outcome: native \(describe(n)), interpreter \(describe(i))")
    return out
  }
  for r in 0..<16 where n.regs[r] != i.regs[r] {
    out.append("\(Asm.regNames64[r]): native \(hex(n.regs[r])), interpreter \(hex(i.regs[r]))")
  }
  let fn = n.rflags & mask
  let fi = i.rflags & mask
  if fn != fi {
    out.append(
      "rflags: native \(hex(fn)) interpreter \(hex(fi)) (differ: \(Flag.names(fn ^ fi)); compared \(Flag.names(mask & ~2)))"
    )
  }
  out += FX.compare(native: n.fx, interpreter: i.fx, fswUndefined: fswUndefined)
  if n.diffCount != i.diffCount || n.diffHash != i.diffHash {
    var nd: [UInt64: UInt64] = [:]
    for d in n.diffs { nd[d.address] = d.value }
    var id: [UInt64: UInt64] = [:]
    for d in i.diffs { id[d.address] = d.value }
    var lines: [String] = []
    for a in Set(nd.keys).union(id.keys).sorted() where nd[a] != id[a] {
      let x = nd[a].map(hex) ?? "unchanged"
      let y = id[a].map(hex) ?? "unchanged"
      lines.append("mem[\(hex(a))]: native \(x), interpreter \(y)")
      if lines.count >= 8 { break }
    }
    if lines.isEmpty {
      lines.append("memory: native changed \(n.diffCount) qwords, interpreter \(i.diffCount)")
    }
    out += lines
  }
  return out
}

public func vectorName(_ v: Int) -> String {
  let names: [Int: String] = [
    0: "#DE(SIGFPE)", 1: "#DB(SIGTRAP)", 3: "#BP(SIGTRAP)", 4: "#OF", 5: "#BR", 6: "#UD(SIGILL)",
    7: "#NM", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS(SIGBUS)", 13: "#GP(SIGSEGV)",
    14: "#PF(SIGSEGV)", 16: "#MF", 17: "#AC(SIGBUS)", 19: "#XM",
  ]
  return names[v] ?? "vector \(v)"
}

/// Per-case seed: reproducible from the run seed and the case index alone.
public func caseSeed(_ seed: UInt64, _ index: Int) -> UInt64 {
  var s = SplitMix(seed ^ (UInt64(index) &* 0xD6E8_FEB8_6659_FD93))
  return s.next()
}

public struct Mismatch {
  public var index: Int
  public var seed: UInt64
  public var form: String
  public var forms: [String]
  public var code: [UInt8]
  public var details: [String]
  /// Initial registers and flags, for the report.
  public var regs: [UInt64]
  public var rflags: UInt64
  public var patches: [(address: UInt64, value: UInt64)]
}

public struct FormStats {
  public var cases = 0
  public var mismatches = 0
}

public struct Report {
  public var casesRun = 0
  public var nativeProblems: [String] = []
  public var mismatches: [Mismatch] = []
  public var mismatchCount = 0
  public var perForm: [String: FormStats] = [:]
  public var formsSelected = 0
  public var elapsed = 0.0
  public var nativeSeconds = 0.0
  public var interpreterSeconds = 0.0
  public var exceptions = 0
  /// Translator runs: instructions retired in translated blocks; lockstep blocks run,
  /// their differences and the first one described.
  public var translatedInstructions: UInt64 = 0
  public var lockstepBlocks: UInt64 = 0
  public var lockstepMismatches: UInt64 = 0
  public var firstLockstepReport: String?

  public var formsCovered: Int { perForm.values.filter { $0.cases > 0 }.count }
}

public struct Config {
  public var cases = 10_000
  public var seed: UInt64 = 1
  public var formFilter: ((String) -> Bool)? = nil
  public var batch = 2048
  /// Mismatches kept in full (all are counted).
  public var keep = 200
  /// Mismatches whose culprit form is searched for (the rest count against
  /// the case's last form).
  public var localize = 5000
  /// Only run this one case index (reproduction).
  public var onlyCase: Int? = nil
  public var maxInstructions: UInt64 = 20_000
  /// Run the cases through the translator engine (blocks translated on first execution)
  /// instead of the interpreter; `lockstep` also checks every block against the interpreter.
  public var translate = false
  public var lockstep = false
  public init() {}
}

/// The differential run: generate, run natively and in the interpreter, compare.
public final class DiffRun {
  public let table = FormTable()
  let config: Config
  let native: NativeRunner
  let interp: InterpreterRunner
  let enabled: [Int]

  public init(_ config: Config) throws {
    self.config = config
    let imageSeed = config.seed
    native = NativeRunner(imageSeed: imageSeed)
    interp = try InterpreterRunner(
      imageSeed: imageSeed, maxInstructions: config.maxInstructions, translate: config.translate,
      lockstep: config.lockstep)
    enabled = table.select(config.formFilter)
  }

  public func generate(_ index: Int) -> TestCase {
    Gen.build(seed: caseSeed(config.seed, index), index: index, table: table, enabled: enabled)
  }

  public func run(progress: ((Report) -> Void)? = nil) throws -> Report {
    var report = Report()
    report.formsSelected = enabled.count
    for f in enabled { report.perForm[table.forms[f].name] = FormStats() }
    guard !enabled.isEmpty else { return report }
    let start = Date()
    let indices: [Int] = config.onlyCase.map { [$0] } ?? Array(0..<config.cases)
    var pos = 0
    while pos < indices.count {
      let chunk = indices[pos..<min(pos + config.batch, indices.count)]
      pos += chunk.count
      let tcs = chunk.map { generate($0) }
      let ncs = tcs.map { $0.nativeCase() }
      let t0 = Date()
      let nat = try native.run(ncs)
      let t1 = Date()
      var ins: [Outcome] = []
      ins.reserveCapacity(ncs.count)
      for c in ncs { ins.append(interp.run(c)) }
      report.nativeSeconds += t1.timeIntervalSince(t0)
      report.interpreterSeconds += Date().timeIntervalSince(t1)
      for k in 0..<tcs.count {
        let tc = tcs[k]
        report.casesRun += 1
        for f in tc.forms { report.perForm[table.forms[f].name, default: FormStats()].cases += 1 }
        if case .exception = nat[k].kind { report.exceptions += 1 }
        switch nat[k].kind {
        case .timeout, .failure:
          report.nativeProblems.append("case \(tc.index): native \(nat[k].kind)")
          continue
        default: break
        }
        let d = compareOutcomes(
          native: nat[k], interpreter: ins[k], undefinedAtEnd: tc.undefinedFlags(),
          undefinedAnywhere: tc.undefinedFlagsAnywhere(), fswUndefined: tc.fswUndefined)
        if d.isEmpty { continue }
        report.mismatchCount += 1
        var culprit = tc.forms.count
        var details = d
        if report.mismatchCount <= config.localize {
          (culprit, details) = try localize(tc, fullDetails: d)
        }
        let fname = table.forms[tc.forms[culprit - 1]].name
        report.perForm[fname, default: FormStats()].mismatches += 1
        if report.mismatches.count < config.keep {
          report.mismatches.append(
            Mismatch(
              index: tc.index, seed: config.seed, form: fname,
              forms: tc.forms.map { table.forms[$0].name }, code: tc.code(formCount: culprit),
              details: details, regs: tc.regs, rflags: tc.rflags, patches: tc.patches))
        }
      }
      report.translatedInstructions = interp.translatedInstructions
      report.lockstepBlocks = interp.lockstepBlocks
      report.lockstepMismatches = interp.lockstepMismatches
      report.firstLockstepReport = interp.firstLockstepReport
      progress?(report)
    }
    report.elapsed = Date().timeIntervalSince(start)
    return report
  }

  /// Finds the shortest prefix of the case that already mismatches.
  func localize(_ tc: TestCase, fullDetails: [String]) throws -> (Int, [String]) {
    let n = tc.forms.count
    guard n > 1 else { return (n, fullDetails) }
    let prefixes = Array(1..<n)
    let ncs = prefixes.map { tc.nativeCase(formCount: $0) }
    let nat = try native.run(ncs)
    for (k, p) in prefixes.enumerated() {
      if case .timeout = nat[k].kind { continue }
      let i = interp.run(ncs[k])
      let d = compareOutcomes(
        native: nat[k], interpreter: i, undefinedAtEnd: tc.undefinedFlags(formCount: p),
        undefinedAnywhere: tc.undefinedFlagsAnywhere(formCount: p), fswUndefined: tc.fswUndefined)
      if !d.isEmpty { return (p, d) }
    }
    return (n, fullDetails)
  }
}

/// Disassembles with the toolchain's clang + llvm-objdump when available.
public func disassemble(_ code: [UInt8]) -> String? {
  let fm = FileManager.default
  var toolDir: String? = nil
  for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
    let p = "\(dir)/swift"
    if fm.isExecutableFile(atPath: p) {
      toolDir = URL(fileURLWithPath: p).resolvingSymlinksInPath().deletingLastPathComponent().path
      break
    }
  }
  guard let dir = toolDir, fm.isExecutableFile(atPath: "\(dir)/llvm-objdump"),
    fm.isExecutableFile(atPath: "\(dir)/clang")
  else { return nil }
  let tmp = NSTemporaryDirectory() + "difftest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
  let asmPath = tmp + ".s"
  let objPath = tmp + ".o"
  defer {
    try? fm.removeItem(atPath: asmPath)
    try? fm.removeItem(atPath: objPath)
  }
  let text =
    ".text\n.globl snippet\nsnippet:\n.byte " + code.map { String($0) }.joined(separator: ",")
    + "\n"
  guard (try? text.write(toFile: asmPath, atomically: true, encoding: .utf8)) != nil else {
    return nil
  }
  func run(_ exe: String, _ args: [String]) -> String? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = Pipe()
    do { try p.run() } catch { return nil }
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return p.terminationStatus == 0 ? String(decoding: out, as: UTF8.self) : nil
  }
  guard run("\(dir)/clang", ["-c", "-x", "assembler", asmPath, "-o", objPath]) != nil,
    let dis = run(
      "\(dir)/llvm-objdump",
      ["-d", "--no-show-raw-insn", "--adjust-vma=\(Layout.code)", "-M", "intel", objPath])
  else { return nil }
  let lines = dis.split(separator: "\n").filter {
    $0.first?.isHexDigit == true && $0.contains(":") && !$0.hasSuffix(">:")
      && !$0.contains("file format")
  }
  return lines.map {
    "    "
      + $0.replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: ":      ", with: ":")
  }.joined(separator: "\n")
}

/// The text of one mismatch, as printed and as written to the findings file.
public func describe(_ m: Mismatch, disassembly: Bool = true) -> String {
  func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
  var s = "MISMATCH form \"\(m.form)\"  seed \(m.seed) case \(m.index)\n"
  s += "  forms in case: \(m.forms.joined(separator: " | "))\n"
  s +=
    "  bytes (prefix up to the culprit): \(m.code.map { String(format: "%02x", $0) }.joined(separator: " "))\n"
  if disassembly, let d = disassemble(m.code) { s += d + "\n" }
  s += "  initial: "
  s += (0..<16).map { "\(Asm.regNames64[$0])=\(hex(m.regs[$0]))" }.joined(separator: " ")
  s += " rflags=\(hex(m.rflags))\n"
  if !m.patches.isEmpty {
    s +=
      "  memory: "
      + m.patches.map { "[\(hex($0.address))]=\(hex($0.value))" }.joined(separator: " ") + "\n"
  }
  for d in m.details { s += "  " + d + "\n" }
  s += "  reproduce: swift run -c release difftest --seed \(m.seed) --case \(m.index) --verbose\n"
  return s
}

extension DiffRun {
  /// Both sides' outcomes of one case, for `--case N --verbose`.
  public func dump(_ index: Int) throws -> String {
    func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
    let tc = generate(index)
    let nc = tc.nativeCase()
    let n = try native.run([nc])[0]
    let i = interp.run(nc)
    var s =
      "case \(index) seed \(config.seed): forms \(tc.forms.map { table.forms[$0].name }.joined(separator: " | "))\n"
    let code = tc.code()
    s += "  bytes: \(code.map { String(format: "%02x", $0) }.joined(separator: " "))\n"
    if let d = disassemble(code) { s += d + "\n" }
    s += "  undefined flags at end: \(Flag.names(tc.undefinedFlags()))\n"
    s += "  initial rflags \(hex(tc.rflags)); patches: "
    s += tc.patches.map { "[\(hex($0.address))]=\(hex($0.value))" }.joined(separator: " ") + "\n"
    for (name, o) in [("native", n), ("interpreter", i)] {
      s += "  \(name): \(o.kind)"
      if case .exception = o.kind { s += " rip \(hex(o.faultRIP)) addr \(hex(o.faultAddress))" }
      s += " rflags \(hex(o.rflags))\n"
      s +=
        "    mem: " + o.diffs.map { "[\(hex($0.address))]=\(hex($0.value))" }.joined(separator: " ")
        + "\n"
    }
    for r in 0..<16 {
      s +=
        "  \(Asm.regNames64[r].padding(toLength: 4, withPad: " ", startingAt: 0)) in \(hex(tc.regs[r]).padding(toLength: 19, withPad: " ", startingAt: 0)) native \(hex(n.regs[r]).padding(toLength: 19, withPad: " ", startingAt: 0)) interp \(hex(i.regs[r]))\n"
    }
    return s
  }
}
