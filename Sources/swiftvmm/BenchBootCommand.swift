import ArgumentParser
import BenchStats
import Boot
import Engine
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// Boot-to-poweroff of the Debian guest on the interpreter, the translator and QEMU TCG, in
/// one invocation: CPU time of each boot, the contenders interleaved, repeated.
struct BenchBoot: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "boot",
    abstract:
      "Boot the Debian guest to poweroff on the interpreter, the translator and QEMU TCG; print times and ratios.",
    discussion: """
      Each round boots every contender once (QEMU TCG, then each variant on the interpreter \
      and the translator), for --repeats rounds. A boot's figure is its CPU time (user + \
      system: QEMU's from wait4, ours from this process's rusage around the machine's \
      construction and run), since the machine is shared; wall time is a secondary column. \
      Printed: the median, its spread (median absolute deviation, as a percentage), and \
      ratios of medians against QEMU and the interpreter.
      """)

  @Option(help: "Guest cache directory (default: $SWIFTVMM_CACHE or ~/.cache/swiftvmm/linux).")
  var cache: String?
  @Option(
    help: ArgumentHelp(
      "Guest memory, as for `run`: a bare number is MiB; K, M, G (or KiB, MiB, GiB) name the unit.",
      valueName: "size"))
  var memory: String = "512M"
  @Option(
    name: [.customLong("repeats"), .customLong("runs")],
    help: "Rounds: boots of each contender, interleaved (the median is reported).")
  var repeats: Int = 3
  @Flag(help: "Also boot with the PVH entry and without kvm-clock (default CPUID policy).")
  var variants = false
  @Flag(
    help:
      "Also boot the Debian system image (guest fetch-rootfs) to its login prompt, ours and QEMU TCG's."
  )
  var system = false
  @Option(help: "Write the figures as JSON to this file.")
  var json: String?
  @OptionGroup var logging: LoggingOptions

  struct Variant {
    var name: String
    var proto: LinuxBootProtocol
    var policy: String
  }

  /// One contender's boots.
  struct Contender {
    var label: String
    var variant: Variant?  // nil for QEMU
    var engine: EngineKind?  // nil for QEMU
    var runs: [BenchSample] = []
    var failure: String?
  }

  func run() throws {
    _ = try logging.bootstrap()
    BenchSupport.lineBufferedOutput()
    let memoryBytes: UInt64
    do {
      memoryBytes = try MemorySize.parse(memory)
    } catch {
      BenchBoot.usageError("--memory: \(error)")
    }
    guard repeats >= 1, repeats <= 1000 else {
      BenchBoot.usageError("--repeats \(repeats): between 1 and 1000")
    }
    if let json { OutputFile.checkWritable(json, what: "--json") }
    let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
    guard let guest = LinuxGuestImages.locate(in: dir) else {
      fail(
        "the Debian guest is not in \(dir); run `swiftvmm guest fetch-linux`",
        status: .unusableInput)
    }
    let initrd = try StandardInitramfs.build(
      guest: guest, initScript: StandardInitramfs.initScript(commands: "echo \(Self.marker)"),
      gzip: false)
    let initrdPath = NSTemporaryDirectory() + "swiftvmm-bench-initrd-\(getpid()).cpio"
    try Data(initrd).write(to: URL(fileURLWithPath: initrdPath))
    defer { try? FileManager.default.removeItem(atPath: initrdPath) }
    guard let kernel = FileManager.default.contents(atPath: guest.bzImage) else {
      fail("cannot read \(guest.bzImage)", status: .unusableInput)
    }
    // no_timer_check, for every contender: on a loaded host QEMU TCG's IO-APIC timer check
    // can fail and panic the kernel (seen 2026-12-03 at load 15), as in --system.
    let cmdline = "console=ttyS0 panic=-1 no_timer_check"

    var variants = [Variant(name: "bzImage, kvm-clock", proto: .bzImage, policy: "kvm")]
    if self.variants {
      variants.append(Variant(name: "PVH, kvm-clock", proto: .pvh, policy: "kvm"))
      variants.append(Variant(name: "bzImage, no kvm-clock", proto: .bzImage, policy: "default"))
    }
    var contenders = [Contender(label: "QEMU TCG")]
    if BenchMeasure.qemuPath == nil {
      contenders[0].failure = "qemu-system-x86_64 not installed"
    }
    for v in variants {
      for engine in Self.engines {
        contenders.append(
          Contender(label: "\(v.name), \(engine.rawValue)", variant: v, engine: engine))
      }
    }
    print(
      "Debian boot to poweroff: CPU seconds (user+system), median of \(repeats) interleaved "
        + "rounds; +- is the median absolute deviation.")
    for _ in 0..<repeats {
      for i in contenders.indices where contenders[i].failure == nil {
        let sample: BenchSample
        if let v = contenders[i].variant, let engine = contenders[i].engine {
          sample = try bootSwiftVMM(
            v, engine: engine, kernel: kernel, initrd: initrd, cmdline: cmdline,
            memoryBytes: memoryBytes)
        } else {
          sample = try BenchMeasure.runChild(
            BenchMeasure.qemuPath!,
            BenchMeasure.qemuTCG + [
              "-m", "\(memoryBytes >> 20)M", "-display", "none", "-serial",
              "stdio", "-no-reboot", "-kernel", guest.bzImage, "-initrd", initrdPath,
              "-append", cmdline,
            ], okStatus: 0)
        }
        guard sample.ok, sample.output.contains(Self.marker) else {
          contenders[i].failure =
            "did not reach poweroff\n" + String(sample.output.suffix(1500))
          continue
        }
        contenders[i].runs.append(sample)
      }
    }
    let rows = report(contenders)
    let systemDoc =
      system ? try benchSystem(guest: guest, cache: dir, memoryMiB: memoryBytes >> 20) : nil
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    print("SwiftVMM peak RSS \(usage.ru_maxrss / 1024) MiB")
    if let json {
      var doc: [String: Any] = [
        "contenders": rows, "repeats": repeats, "peakRSSKiB": usage.ru_maxrss,
      ]
      if let systemDoc { doc["debianSystemToLogin"] = systemDoc }
      let data = try JSONSerialization.data(
        withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
      OutputFile.write([UInt8](data), to: json, what: "--json")
    }
  }

  /// What the initramfs prints before it powers off.
  static let marker = "SWIFTVMM-BOOT-OK"

  /// The software engines measured, the interpreter first (the translator's yardstick).
  static let engines: [EngineKind] = [.interpreter, .translator]

  /// One boot of variant `v` on `engine` in this process; its CPU time covers the
  /// machine's construction and run (this process does nothing else meanwhile).
  func bootSwiftVMM(
    _ v: Variant, engine: EngineKind, kernel: Data, initrd: [UInt8], cmdline: String,
    memoryBytes: UInt64
  ) throws -> BenchSample {
    let before = BenchMeasure.processCPUSeconds()
    let start = DispatchTime.now().uptimeNanoseconds
    var c = MachineConfig(kernel: [UInt8](kernel), kernelName: "vmlinuz", engine: engine)
    c.initrd = initrd
    c.commandLine = cmdline
    c.memorySize = memoryBytes
    c.linuxProtocol = v.proto
    c.cpuid = try CPUIDPolicy.load(nameOrPath: v.policy)
    c.timeout = 1800
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    let cpu = BenchMeasure.processCPUSeconds() - before
    let wall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    return BenchSample(
      cpuSeconds: cpu, instructions: m.statistics()["instructions"], ok: o == .powerOff,
      output: o == .powerOff ? console.capturedText : "\(o)\n" + console.capturedText,
      wallSeconds: wall)
  }

  /// Prints the table (and failures) and returns the JSON rows.
  func report(_ contenders: [Contender]) -> [[String: Any]] {
    func cpu(_ c: Contender) -> BenchSummary? {
      c.failure == nil && !c.runs.isEmpty ? BenchSummary(c.runs.map(\.cpuSeconds)) : nil
    }
    let qemu = cpu(contenders[0])
    var table = [
      [
        "contender", "CPU s", "+-", "wall s", "instructions", "MIPS (CPU)", "vs QEMU",
        "vs interpreter",
      ]
    ]
    var rows: [[String: Any]] = []
    var interpreter: [String: Double] = [:]  // variant -> median CPU seconds
    for c in contenders {
      guard let s = cpu(c) else {
        print("\(c.label): \(c.failure ?? "no runs")")
        continue
      }
      let wall = BenchSummary(c.runs.map(\.wallSeconds))
      var row: [String: Any] = [
        "contender": c.label, "cpuSeconds": s.median, "cpuSpreadSeconds": s.spread,
        "cpuRuns": c.runs.map(\.cpuSeconds), "wallSeconds": wall.median,
        "wallRuns": c.runs.map(\.wallSeconds),
      ]
      var line = [
        c.label, fmt(s.median), fmt(100 * s.relativeSpread, 0) + "%", fmt(wall.median),
      ]
      if let v = c.variant, let e = c.engine {
        row["variant"] = v.name
        row["engine"] = e.rawValue
        let instructions = c.runs.last?.instructions ?? 0
        row["instructions"] = instructions
        line += [
          "\(instructions)", fmt(Double(instructions) / s.median / 1e6, 1),
          qemu.map { fmt(s.median / $0.median, 2) + "x" } ?? "-",
        ]
        if let q = qemu { row["ratio"] = s.median / q.median }
        if e == .interpreter {
          interpreter[v.name] = s.median
        } else if let base = interpreter[v.name] {
          line.append(fmt(s.median / base, 2) + "x")
          row["ratioToInterpreter"] = s.median / base
        }
      } else {
        row["engine"] = "qemu"
        row["peakRSSKiB"] = c.runs.map(\.peakRSSKiB).max() ?? 0
        line += ["-", "-", "1.00x"]
      }
      table.append(line + Array(repeating: "", count: max(0, table[0].count - line.count)))
      rows.append(row)
    }
    let widths = table[0].indices.map { i in table.map { $0[i].count }.max()! + 2 }
    for r in table {
      print(r.enumerated().map { BenchSupport.pad($0.element, widths[$0.offset]) }.joined())
    }
    if let q = contenders.first, q.failure == nil, !q.runs.isEmpty {
      print("QEMU TCG peak RSS \((q.runs.map(\.peakRSSKiB).max() ?? 0) / 1024) MiB")
    }
    return rows
  }

  func fmt(_ v: Double, _ d: Int = 2) -> String { BenchSupport.fmt(v, d) }
}
