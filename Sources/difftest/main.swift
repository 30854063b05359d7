import ArgumentParser
import DiffTest
import Foundation

/// `difftest`: checks the interpreter against the host CPU, instruction form by form.
struct DiffTestCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "difftest",
    abstract: "Differential test of the SwiftVMM interpreter (or translator) against the host CPU.")

  @Option(help: "Number of cases to run.") var cases: Int = 100_000
  @Option(help: "Run seed (cases are reproducible from seed and index).") var seed: UInt64 = 1
  @Option(help: "Only forms whose name matches this regular expression.") var forms: String?
  @Option(name: .customLong("case"), help: "Run only this case index (reproduction).")
  var onlyCase: Int?
  @Option(help: "Mismatches shown in detail.") var show: Int = 20
  @Option(help: "Write a per-form coverage table to this file.") var coverage: String?
  @ArgumentParser.Flag(help: "Print every form's counts and a disassembly of each shown mismatch.")
  var verbose = false
  @ArgumentParser.Flag(help: "List the forms and exit.") var listForms = false
  @Option(
    help: "Engine under test: interpreter or translator (blocks translated on first execution).")
  var engine: String = "interpreter"
  @ArgumentParser.Flag(
    help: "With --engine translator: also run every block in the interpreter and compare.")
  var lockstep = false

  func run() throws {
    var config = Config()
    config.cases = cases
    config.seed = seed
    config.onlyCase = onlyCase
    switch engine {
    case "interpreter": break
    case "translator": config.translate = true
    default: throw ValidationError("unknown engine '\(engine)'; choose interpreter or translator")
    }
    if lockstep && !config.translate {
      throw ValidationError("--lockstep needs --engine translator")
    }
    config.lockstep = lockstep
    if let f = forms {
      let re = try Regex(f)
      config.formFilter = { name in (try? re.firstMatch(in: name)) != nil }
    }
    let run = try DiffRun(config)
    if listForms {
      for i in run.table.select(config.formFilter) { print(run.table.forms[i].name) }
      return
    }
    if let c = onlyCase, verbose { print(try run.dump(c)) }
    var lastPrint = Date()
    let report = try run.run { r in
      if Date().timeIntervalSince(lastPrint) > 5 {
        lastPrint = Date()
        FileHandle.standardError.write(
          "  ... \(r.casesRun) cases, \(r.mismatchCount) mismatches\n".data(using: .utf8)!)
      }
    }
    for m in report.mismatches.prefix(show) {
      print(describe(m, disassembly: true))
    }
    if verbose || coverage != nil {
      var lines: [String] = []
      for (name, st) in report.perForm.sorted(by: { $0.key < $1.key }) {
        lines.append(
          "\(name.padding(toLength: 36, withPad: " ", startingAt: 0)) cases \(st.cases)  mismatches \(st.mismatches)"
        )
      }
      if verbose { print(lines.joined(separator: "\n")) }
      if let path = coverage {
        try (lines.joined(separator: "\n") + "\n").write(
          toFile: path, atomically: true, encoding: .utf8)
      }
    }
    // Mismatch classes by culprit form.
    let bad = report.perForm.filter { $0.value.mismatches > 0 }.sorted {
      $0.value.mismatches > $1.value.mismatches
    }
    if !bad.isEmpty {
      print("mismatching forms (culprit = shortest mismatching prefix):")
      for (name, st) in bad { print("  \(name): \(st.mismatches) of \(st.cases)") }
    }
    for p in report.nativeProblems.prefix(10) { print("native problem: \(p)") }
    let rate = Double(report.casesRun) / max(report.elapsed, 1e-9)
    print(
      "forms covered: \(report.formsCovered)/\(report.formsSelected)  cases run: \(report.casesRun)  mismatches: \(report.mismatchCount)  exceptions: \(report.exceptions)"
    )
    print(
      String(
        format:
          "time %.1fs (%.0f cases/s; native %.1fs = %.0f cases/s, interpreter %.1fs)  seed %llu",
        report.elapsed, rate, report.nativeSeconds,
        Double(report.casesRun) / max(report.nativeSeconds, 1e-9), report.interpreterSeconds, seed))
    if config.translate {
      print(
        "translator: \(report.translatedInstructions) instructions in translated blocks"
          + (lockstep
            ? "; lockstep: \(report.lockstepBlocks) blocks, \(report.lockstepMismatches) differences"
            : ""))
      if let r = report.firstLockstepReport { print(r) }
    }
    if report.mismatchCount > 0 || !report.nativeProblems.isEmpty || report.lockstepMismatches > 0 {
      throw ExitCode(1)
    }
  }
}

DiffTestCommand.main()
