import ArgumentParser
import Engine
import Foundation
import VMM

/// `--mmu` and its knobs, part of `VMOptions`.
struct MMUOptions: ParsableArguments {
  @Option(
    help:
      "Memory virtualization (interpreter): direct, nested, shadow or paravirt. With --engine kvm only nested (what the hardware does)."
  )
  var mmu: String?
  @Option(
    help: "Print the GVA -> GPA -> HPA chain of this guest-virtual address (hex) when the VM stops."
  )
  var translate: String?
  @Option(
    help: "With --translate: stop the guest after this many instructions and print the chain then.")
  var translateAt: UInt64?
  @Option(help: "Shadow mode: most shadow pages before all are zapped (default 4096).")
  var shadowCap: Int?
  @Flag(help: "Nested mode: cache nested translations (a nested-dimension walk cache).")
  var nestedWalkCache = false

  static func parseMode(_ s: String) throws -> MMUMode {
    guard let m = MMUMode(name: s.lowercased()) else {
      throw ValidationError("unknown --mmu '\(s)'; choose direct, nested, shadow or paravirt")
    }
    return m
  }

  /// Applies the flags; returns the address to translate, if any.
  func apply(to config: inout MachineConfig) throws -> UInt64? {
    if let mmu { config.mmuMode = try MMUOptions.parseMode(mmu) }
    config.shadowPageCap = shadowCap
    config.nestedWalkCache = nestedWalkCache
    guard let translate else {
      if translateAt != nil { throw ValidationError("--translate-at needs --translate GVA") }
      return nil
    }
    let t = translate.lowercased().hasPrefix("0x") ? String(translate.dropFirst(2)) : translate
    guard let gva = UInt64(t, radix: 16) else {
      throw ValidationError("--translate: '\(translate)' is not a hex address")
    }
    if let n = translateAt {
      guard n >= 1 else { throw ValidationError("--translate-at 0: must be at least 1") }
      guard config.engine.interpretsInstructions else {
        throw ValidationError(
          "--translate-at needs a software engine (interpreter or translator): KVM does not count instructions"
        )
      }
      config.maxInstructions = n
    }
    return gva
  }
}

/// Runs one guest in every applicable MMU mode and compares the counters.
struct MMUCompare: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mmu-compare",
    abstract:
      "Run the same guest with --mmu direct, nested, shadow (and paravirt for PV guests) and compare the cost."
  )

  @Option(help: "Kernel image.")
  var kernel: String
  @Option(help: "Initial ramdisk.")
  var initrd: String?
  @Option(
    help:
      "Modes to run, comma separated (default: direct,nested,shadow,paravirt; paravirt is skipped if the guest is not PV). --shadow-cap applies to the shadow run; --nested-walk-cache adds a nested run with the cache."
  )
  var modes: String = "direct,nested,shadow,paravirt"
  @Option(help: "Write every run's statistics as JSON to this file (docs/STATS.md).")
  var json: String?
  @Option(help: "Write an SVG bar chart to this file.")
  var svg: String?
  @Flag(help: "Show the guest's console output.")
  var showOutput = false
  @OptionGroup var vm: VMOptions
  @OptionGroup var logging: LoggingOptions

  func run() throws {
    let logger = try logging.bootstrap()
    let u = MMUCompare.usageError
    if vm.mmuOptions.mmu != nil { u("mmu-compare runs every mode: use --modes, not --mmu") }
    if vm.stats != nil { u("mmu-compare writes its statistics with --json, not --stats") }
    if vm.mmuOptions.translate != nil { u("--translate is for `swiftvmm run`") }
    if vm.gdbOptions.gdb != nil || vm.gdbOptions.gdbWait {
      u("--gdb is for `swiftvmm run` and `linux`")
    }
    if vm.engine != nil && vm.engine != "interpreter" {
      u("mmu-compare compares the interpreter's MMU modes: --engine must be interpreter")
    }
    // The per-mode knobs are checked per run below, where they apply.
    let shadowCap = vm.mmuOptions.shadowCap
    let nestedWalkCache = vm.mmuOptions.nestedWalkCache
    var plain = vm
    plain.mmuOptions.shadowCap = nil
    plain.mmuOptions.nestedWalkCache = false
    var base = MachineConfig(kernel: [], kernelName: kernel, engine: .interpreter)
    _ = plain.apply(to: &base, defaults: .init(engine: .interpreter), command: MMUCompare.self)

    var runs: [(String, MachineConfig)] = []
    for m in modes.split(separator: ",") {
      let mode: MMUMode
      do { mode = try MMUOptions.parseMode(String(m)) } catch { u("\(error)") }
      var c = base
      c.mmuMode = mode
      if mode == .shadow { c.shadowPageCap = shadowCap }
      runs.append((mode.name, c))
      if mode == .nested && nestedWalkCache {
        c.nestedWalkCache = true
        runs.append(("nested+cache", c))
      }
    }
    if shadowCap != nil && !runs.contains(where: { $0.1.mmuMode == .shadow }) {
      u("--shadow-cap needs shadow among --modes")
    }
    if nestedWalkCache && !runs.contains(where: { $0.1.nestedWalkCache }) {
      u("--nested-walk-cache needs nested among --modes")
    }
    for (_, c) in runs {
      do { try c.validate() } catch { u("\(error)") }
    }
    if let json { OutputFile.checkWritable(json, what: "--json") }
    if let svg { OutputFile.checkWritable(svg, what: "--svg") }

    guard let k = FileManager.default.contents(atPath: kernel) else {
      fail("kernel '\(kernel)' cannot be read", status: .unusableInput)
    }
    let rd = initrd.map { p -> [UInt8] in
      guard let d = FileManager.default.contents(atPath: p) else {
        fail("initrd '\(p)' cannot be read", status: .unusableInput)
      }
      return [UInt8](d)
    }
    var results: [MMUCompareRow] = []
    var reports: [StatsReport] = []
    var firstOutput: String?
    for (label, var c) in runs {
      c.kernel = [UInt8](k)
      c.initrd = rd
      let mode = c.mmuMode ?? .direct
      let console = ConsoleOutput(capturing: ())
      let m: Machine
      do {
        m = try Machine(config: c, console: console, logger: logger)
      } catch {
        fail("\(kernel): \(error)", status: .unusableInput)
      }
      FileHandle.standardError.write(Data("mmu-compare: running \(label)...\n".utf8))
      let outcome = m.run()
      // Kernel log timestamps are host time; they differ between any two runs.
      let raw = console.capturedText
      let out = raw.replacingOccurrences(
        of: #"\[ *[0-9]+\.[0-9]+\]"#, with: "[T]", options: .regularExpression)
      if showOutput { print("--- \(label) output ---\n\(raw)") }
      if mode == .paravirt, case .guestFailure(let why) = outcome, why.contains("HC_PV_HELLO") {
        FileHandle.standardError.write(Data("mmu-compare: paravirt skipped: \(why)\n".utf8))
        continue
      }
      let row = MMUCompareRow(
        label: label, outcome: outcome.description, counters: m.statistics(), wall: m.wallSeconds)
      if firstOutput == nil {
        firstOutput = out
      } else if out != firstOutput {
        FileHandle.standardError.write(
          Data(
            "mmu-compare: WARNING: \(label) printed different output than \(results[0].label)\n"
              .utf8))
      }
      results.append(row)
      reports.append(StatsReport(label: label, machine: m, outcome: outcome))
    }
    print(MMUCompareRow.table(results))
    if let json { OutputFile.write(StatsReport.json(runs: reports), to: json, what: "--json") }
    if let svg { OutputFile.write(MMUCompareRow.svg(results), to: svg, what: "--svg") }
  }
}

struct MMUCompareRow {
  var label: String
  var outcome: String
  var counters: [String: UInt64]
  var wall: Double

  func c(_ k: String) -> UInt64 { counters[k] ?? 0 }
  var walks: UInt64 { c("mmu.page_walks") }
  var guestRefs: UInt64 { label == "shadow" ? c("mmu.shadow_refs") : c("mmu.guest_refs") }
  var nestedRefs: UInt64 { c("mmu.nested_refs") }
  func perWalk(_ v: UInt64) -> String {
    walks == 0 ? "-" : String(format: "%.2f", Double(v) / Double(walks))
  }

  static let metrics: [(String, (MMUCompareRow) -> String)] = [
    ("outcome", { $0.outcome.count > 28 ? String($0.outcome.prefix(28)) + "…" : $0.outcome }),
    ("instructions", { "\($0.c("instructions"))" }),
    ("TLB hits", { "\($0.c("tlb.hits"))" }),
    ("TLB misses", { "\($0.c("tlb.misses"))" }),
    ("page walks", { "\($0.walks)" }),
    ("refs/walk guest (shadow: shadow table)", { $0.perWalk($0.guestRefs) }),
    ("refs/walk nested", { $0.perWalk($0.nestedRefs) }),
    ("refs/walk total", { $0.perWalk($0.guestRefs + $0.nestedRefs) }),
    ("nested walk-cache hits", { "\($0.c("mmu.nested_cache_hits"))" }),
    ("exits: nested faults", { "\($0.c("mmu.exits.nested_faults"))" }),
    ("exits: shadow misses", { "\($0.c("mmu.exits.shadow_misses"))" }),
    ("exits: write-protect emulations", { "\($0.c("mmu.exits.write_protect"))" }),
    ("  (stores emulated)", { "\($0.c("mmu.shadow.emulated_writes"))" }),
    ("exits: CR3 loads/paging changes", { "\($0.c("mmu.exits.cr3_loads"))" }),
    ("exits: INVLPG", { "\($0.c("mmu.exits.invlpg"))" }),
    ("exits: hypercalls", { "\($0.c("mmu.exits.hypercalls"))" }),
    ("exits: all", { "\($0.c("exits.total"))" }),
    ("guest #PF injected by VMM", { "\($0.c("mmu.shadow.injected_pf"))" }),
    ("guest CR3 loads", { "\($0.c("mmu.cr3_loads"))" }),
    ("guest INVLPGs", { "\($0.c("mmu.invlpg"))" }),
    (
      "shadow pages in use / peak",
      { "\($0.c("mmu.shadow.pages")) / \($0.c("mmu.shadow.pages_peak"))" }
    ),
    (
      "shadow zap-alls / flood unprotects",
      { "\($0.c("mmu.shadow.zap_all")) / \($0.c("mmu.shadow.flood_unprotects"))" }
    ),
    ("host frames used", { "\($0.c("mmu.host_frames_used"))" }),
    ("  of which VMM tables (peak)", { "\($0.c("mmu.vmm_table_frames_peak"))" }),
    ("wall time (s)", { String(format: "%.2f", $0.wall) }),
    ("MIPS", { String(format: "%.1f", Double($0.c("instructions")) / max($0.wall, 1e-9) / 1e6) }),
  ]

  static func table(_ rows: [MMUCompareRow]) -> String {
    let w0 = metrics.map { $0.0.count }.max()!
    let cells = rows.map { r in metrics.map { $0.1(r) } }
    let widths = rows.indices.map { i in
      max(rows[i].label.count, cells[i].map { $0.count }.max() ?? 0)
    }
    func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
      let p = String(repeating: " ", count: max(0, w - s.count))
      return left ? s + p : p + s
    }
    var lines = [
      "| " + pad("", w0, left: true) + " | "
        + rows.indices.map { pad(rows[$0].label, widths[$0]) }.joined(separator: " | ") + " |"
    ]
    lines.append(
      "|" + String(repeating: "-", count: w0 + 2) + "|"
        + widths.map { String(repeating: "-", count: $0 + 1) + ":" }.joined(separator: "|") + "|")
    for (mi, m) in metrics.enumerated() {
      lines.append(
        "| " + pad(m.0, w0, left: true) + " | "
          + rows.indices.map { pad(cells[$0][mi], widths[$0]) }.joined(separator: " | ") + " |")
    }
    return lines.joined(separator: "\n")
  }

  /// A small grouped bar chart: wall time, exits and refs/walk, each normalised to its maximum.
  static func svg(_ rows: [MMUCompareRow]) -> String {
    let series: [(String, (MMUCompareRow) -> Double)] = [
      ("wall time (s)", { $0.wall }),
      ("exits", { Double($0.c("exits.total")) }),
      (
        "refs per walk",
        { $0.walks == 0 ? 0 : Double($0.guestRefs + $0.nestedRefs) / Double($0.walks) }
      ),
      ("TLB misses", { Double($0.c("tlb.misses")) }),
    ]
    let colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"]
    let groupW = 40 + rows.count * 34
    let width = 60 + series.count * groupW
    var s =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"300\" font-family=\"sans-serif\" font-size=\"11\">\n"
    s +=
      "<text x=\"10\" y=\"16\" font-size=\"13\">swiftvmm mmu-compare (each group scaled to its maximum)</text>\n"
    for (gi, se) in series.enumerated() {
      let vals = rows.map { se.1($0) }
      let mx = max(vals.max() ?? 1, 1e-12)
      let x0 = 40 + gi * groupW
      for (ri, v) in vals.enumerated() {
        let h = 200 * v / mx
        let x = x0 + ri * 34
        s +=
          "<rect x=\"\(x)\" y=\"\(String(format: "%.1f", 240 - h))\" width=\"28\" height=\"\(String(format: "%.1f", h))\" fill=\"\(colors[ri % colors.count])\"/>\n"
        let txt = v >= 100 ? String(format: "%.0f", v) : String(format: "%.2f", v)
        s +=
          "<text x=\"\(x)\" y=\"\(String(format: "%.1f", 236 - h))\" font-size=\"9\">\(txt)</text>\n"
      }
      s += "<text x=\"\(x0)\" y=\"258\">\(se.0)</text>\n"
    }
    for (ri, r) in rows.enumerated() {
      s +=
        "<rect x=\"\(40 + ri * 110)\" y=\"272\" width=\"10\" height=\"10\" fill=\"\(colors[ri % colors.count])\"/><text x=\"\(54 + ri * 110)\" y=\"281\">\(r.label)</text>\n"
    }
    return s + "</svg>\n"
  }
}
