import ArgumentParser
import BenchStats
import Engine
import Foundation
import VMM

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Benchmarks against QEMU, run in the same invocation. They report; they never fail for being slow.",
    subcommands: [BenchCPU.self, BenchBoot.self, BenchIO.self])
}

enum BenchSupport {
  static func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
  /// Two significant digits, no exponent below 100: ratios and rates that span 0.05 to 50.
  static func fmt2(_ v: Double) -> String {
    abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.2g", v)
  }
  static func pad(_ s: String, _ n: Int) -> String {
    s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
  }
  /// Benches run for minutes: print each line as it comes, even into a file or a pipe.
  static func lineBufferedOutput() { setvbuf(stdout, nil, _IOLBF, 0) }
}

/// A CPU workload: its guest, the command-line key that sets its amount of work, and the
/// units its smaller run does (the larger run does three times as many).
struct BenchWorkload {
  var name: String
  var unitKey: String
  var smallUnits: UInt64
  var fixedArguments: String
  /// What a reader of the table must know about this workload's figures.
  var caveat: String? = nil

  static let all = [
    BenchWorkload(name: "loop", unitKey: "iters", smallUnits: 2_000_000, fixedArguments: ""),
    BenchWorkload(name: "sort", unitKey: "rounds", smallUnits: 4, fixedArguments: "n=65536"),
    BenchWorkload(name: "crc32", unitKey: "repeat", smallUnits: 1, fixedArguments: ""),
    BenchWorkload(
      name: "mem", unitKey: "rounds", smallUnits: 2, fixedArguments: "",
      caveat: "a REP MOVS/STOS counts as one instruction, so its MIPS are tiny: read the ratios"),
    BenchWorkload(name: "chase", unitKey: "steps", smallUnits: 1_000_000, fixedArguments: ""),
  ]

  func cmdline(units: UInt64) -> String {
    ([fixedArguments, "\(unitKey)=\(units)"].filter { !$0.isEmpty }).joined(separator: " ")
  }
}

/// Where a bench guest can run.
enum BenchEngine: Equatable {
  case swiftvmm(EngineKind)
  case qemu
  case native

  init?(name: String) {
    switch name {
    case "qemu": self = .qemu
    case "native": self = .native
    default:
      guard let k = EngineKind(rawValue: name), k != .kvm else { return nil }
      self = .swiftvmm(k)
    }
  }

  var name: String {
    switch self {
    case .swiftvmm(let k): return k.rawValue
    case .qemu: return "qemu"
    case .native: return "native"
    }
  }
}

struct BenchCPU: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cpu",
    abstract:
      "CPU-bound guest suite on SwiftVMM's engines, QEMU TCG and natively: MIPS and ratios.",
    discussion: """
      Each engine runs each workload in pairs of runs, N then 3N units back to back, the pairs \
      interleaved across engines; N is first grown per engine until a pair's difference takes \
      --target CPU seconds (user + system). The median of the pairs' differences over 2N units is \
      the cost per unit, so every engine's start-up and the workload's set-up cancel out. After \
      --repeats pairs, an engine whose differences still spread by more than 10% (median absolute \
      deviation) gets up to as many pairs again. Instructions per unit come from SwiftVMM's own \
      count. A figure whose spread is over 25% of its difference is not printed. Native runs \
      the same kernels as host programs (build them with bench/native/build.sh).
      """)

  @Option(help: "Directory with the bench_*.elf guests (built by Guests/build.sh).")
  var guests: String = "Guests/build"
  @Option(help: "Directory with the native bench_* programs (built by bench/native/build.sh).")
  var native: String = "bench/native/build"
  @Option(help: "Comma-separated engines: interpreter, translator, qemu, native.")
  var engines: String = "interpreter,translator,qemu,native"
  @Option(help: "Multiply every engine's work by this.")
  var size: UInt64 = 1
  @Option(
    help: "Each engine's work grows until its N-to-3N difference takes this many CPU seconds.")
  var target: Double = 0.5
  @Option(help: "Pairs of runs (N and 3N units) per engine; the median difference is taken.")
  var repeats: Int = 3
  @Option(help: "Comma-separated workloads.")
  var only: String = "loop,sort,crc32,mem,chase"
  @Option(help: "Write the figures as JSON to this file.")
  var json: String?
  @OptionGroup var logging: LoggingOptions

  func run() throws {
    _ = try logging.bootstrap()
    BenchSupport.lineBufferedOutput()
    var chosen: [BenchEngine] = []
    for n in engines.split(separator: ",").map(String.init) {
      guard let e = BenchEngine(name: n) else {
        fail("unknown bench engine '\(n)' (interpreter, translator, qemu, native)", status: .usage)
      }
      chosen.append(e)
    }
    guard repeats >= 1, size >= 1, target > 0 else {
      fail("--repeats and --size must be at least 1, --target positive", status: .usage)
    }
    var workloads: [BenchWorkload] = []
    for n in only.split(separator: ",").map(String.init) {
      guard let w = BenchWorkload.all.first(where: { $0.name == n }) else {
        fail(
          "unknown workload '\(n)' (\(BenchWorkload.all.map(\.name).joined(separator: ", ")))",
          status: .usage)
      }
      workloads.append(w)
    }
    var unavailable: [String: String] = [:]
    if chosen.contains(.qemu) {
      if BenchMeasure.qemuPath == nil {
        unavailable["qemu"] = "qemu-system-x86_64 not installed"
      } else {
        print("QEMU: " + BenchMeasure.qemuTCG.joined(separator: " "))
      }
    }
    if chosen.contains(.native) && !FileManager.default.fileExists(atPath: native + "/bench_loop") {
      unavailable["native"] = "not built (run bench/native/build.sh)"
    }
    print(
      "CPU seconds (user+system); per-unit cost: median over \(repeats)+ pairs of (3N - N units).")

    var rows: [[String: Any]] = []
    var table: [[String]] = []
    for w in workloads {
      let path = "\(guests)/bench_\(w.name).elf"
      guard let data = FileManager.default.contents(atPath: path) else {
        fail("missing \(path); run Guests/build.sh", status: .unusableInput)
      }
      let kernel = [UInt8](data)
      var costs: [String: UnitCost] = [:]
      var instructionsPerUnit: Double?
      var notes: [String] = w.caveat.map { [$0] } ?? []
      var reference: [UInt64: String] = [:]  // result line per size, from the first engine
      // engine -> [small runs, large runs]; small[i] and large[i] ran back to back.
      var samples: [String: [[BenchSample]]] = [:]
      func measure(_ e: BenchEngine, _ units: UInt64) throws -> BenchSample {
        let cmd = w.cmdline(units: units)
        switch e {
        case .swiftvmm(let k):
          return try BenchMeasure.runEngine(
            k, kernel: kernel, name: path, cmdline: cmd, memory: 256 << 20)
        case .qemu:
          return try BenchMeasure.runChild(
            BenchMeasure.qemuPath!,
            BenchMeasure.qemuArguments(kernel: path, cmdline: cmd, memoryMiB: 256),
            okStatus: 1)  // isa-debug-exit: (0 << 1) | 1
        case .native:
          return try BenchMeasure.runChild("\(native)/bench_\(w.name)", [cmd], okStatus: 0)
        }
      }
      // Calibration: each engine's work is scaled (exactly, in whole units) until its
      // difference between N and 3N units clears --target, so fast engines are not
      // measured on start-up noise and slow ones are not run for minutes. The pair that
      // clears it is the first of the measured pairs.
      var scales: [String: UInt64] = [:]
      for e in chosen where unavailable[e.name] == nil {
        var m = size
        do {
          for step in 0..<8 {
            let a = try measure(e, w.smallUnits * m)
            let b = try measure(e, 3 * w.smallUnits * m)
            let d = b.cpuSeconds - a.cpuSeconds
            if !a.ok || !b.ok || d >= target || step == 7 {
              samples[e.name] = [[a], [b]]
              break
            }
            m *= d < target / 64 ? 64 : max(2, UInt64((target / d * 1.2).rounded(.up)))
          }
        } catch {
          unavailable[e.name] = "\(error)"
        }
        scales[e.name] = m
      }
      // Pairs of runs, interleaved across engines so a burst of load hits them alike:
      // --repeats pairs each, then up to as many again for engines whose figure has not
      // settled (BenchStats.UnitCost.isSettled).
      func addPair(_ e: BenchEngine) {
        let scale = scales[e.name]!
        var pair = samples[e.name] ?? [[], []]
        for (i, units) in [w.smallUnits * scale, 3 * w.smallUnits * scale].enumerated() {
          do {
            pair[i].append(try measure(e, units))
          } catch {
            unavailable[e.name] = "\(error)"
            break
          }
        }
        samples[e.name] = pair
      }
      func failed(_ e: BenchEngine) -> Bool {
        (samples[e.name] ?? []).joined().contains { !$0.ok }
      }
      func settled(_ e: BenchEngine) -> Bool {
        guard let pair = samples[e.name] else { return true }
        let small = w.smallUnits * scales[e.name]!
        return UnitCost(
          small: pair[0].map(\.cpuSeconds), large: pair[1].map(\.cpuSeconds),
          smallUnits: small, largeUnits: 3 * small
        ).isSettled
      }
      for round in 1..<(2 * repeats) {
        for e in chosen where unavailable[e.name] == nil && scales[e.name] != nil && !failed(e) {
          if round >= repeats && settled(e) { continue }
          addPair(e)
        }
      }
      var line = [w.name]
      var row: [String: Any] = ["workload": w.name]
      for e in chosen {
        guard unavailable[e.name] == nil, let pair = samples[e.name], !pair[1].isEmpty
        else { continue }
        let small = w.smallUnits * scales[e.name]!
        if let bad = (pair[0] + pair[1]).first(where: { !$0.ok }) {
          notes.append("\(e.name): guest did not finish cleanly: \(bad.output.suffix(200))")
          continue
        }
        // Every engine must print the same result for the same work; engines that ran
        // the same sizes are compared.
        let key = small
        let got = [pair[0][0].result ?? "", pair[1][0].result ?? ""].joined(separator: "|")
        if let r = reference[key], r != got {
          notes.append("\(e.name): results differ: \(got) vs \(r)")
        }
        reference[key] = reference[key] ?? got
        let c = UnitCost(
          small: pair[0].map(\.cpuSeconds), large: pair[1].map(\.cpuSeconds), smallUnits: small,
          largeUnits: 3 * small)
        if instructionsPerUnit == nil, let i0 = pair[0][0].instructions,
          let i1 = pair[1][0].instructions
        {
          instructionsPerUnit = Double(i1 - i0) / Double(2 * small)
        }
        if c.isMeasurement {
          costs[e.name] = c
        } else {
          notes.append(
            "\(e.name): difference \(BenchSupport.fmt(c.deltaSeconds, 3)) s is within its noise "
              + "(spread \(BenchSupport.fmt(c.spreadSeconds, 3)) s over \(c.pairs) pairs); raise --target"
          )
        }
        row[e.name] = [
          "secondsPerUnit": c.secondsPerUnit, "startupSeconds": c.startupSeconds,
          "deltaSeconds": c.deltaSeconds, "spreadSeconds": c.spreadSeconds, "pairs": c.pairs,
          "measured": c.isMeasurement,
        ]
      }
      if let ipu = instructionsPerUnit { row["instructionsPerUnit"] = ipu }
      line.append(instructionsPerUnit.map { BenchSupport.fmt($0, 0) } ?? "-")
      for e in chosen {
        if let c = costs[e.name], let ipu = instructionsPerUnit {
          line.append(BenchSupport.fmt2(ipu / c.secondsPerUnit / 1e6))
        } else {
          line.append("-")
        }
      }
      // Time ratios of each SwiftVMM engine against QEMU and native: lower is better.
      for e in chosen {
        guard case .swiftvmm = e else { continue }
        for other in ["qemu", "native"] where chosen.contains(where: { $0.name == other }) {
          if let a = costs[e.name], let b = costs[other] {
            line.append(BenchSupport.fmt2(a.secondsPerUnit / b.secondsPerUnit) + "x")
          } else {
            line.append("-")
          }
        }
      }
      table.append(line)
      for (name, c) in costs.sorted(by: { $0.key < $1.key }) {
        notes.append(
          "\(name): \(w.smallUnits * scales[name]!)/\(3 * w.smallUnits * scales[name]!) "
            + "\(w.unitKey), start-up \(BenchSupport.fmt(c.startupSeconds, 3)) s, difference "
            + "\(BenchSupport.fmt(c.deltaSeconds, 3)) s +-\(BenchSupport.fmt(100 * c.relativeSpread, 0))% "
            + "(\(c.pairs) pairs), \(String(format: "%.3g", c.secondsPerUnit * 1e9)) ns/\(w.unitKey)"
        )
      }
      for n in notes { print("  \(w.name) \(n)") }
      rows.append(row)
    }
    var header = ["workload", "instr/unit"] + chosen.map { "\($0.name) MIPS" }
    for e in chosen {
      guard case .swiftvmm = e else { continue }
      for other in ["qemu", "native"] where chosen.contains(where: { $0.name == other }) {
        header.append("\(e.name)/\(other)")
      }
    }
    let widths = header.indices.map { i in
      ([header] + table).map { $0.indices.contains(i) ? $0[i].count : 0 }.max()! + 2
    }
    func render(_ r: [String]) -> String {
      r.enumerated().map { BenchSupport.pad($0.element, widths[$0.offset]) }.joined()
    }
    print(render(header))
    for r in table { print(render(r)) }
    for (e, why) in unavailable.sorted(by: { $0.key < $1.key }) {
      print("\(e) unavailable: \(why)")
    }
    if let json {
      let data = try JSONSerialization.data(
        withJSONObject: ["workloads": rows, "repeats": repeats, "size": size],
        options: [.prettyPrinted, .sortedKeys])
      try data.write(to: URL(fileURLWithPath: json))
    }
  }
}
