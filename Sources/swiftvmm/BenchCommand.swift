import ArgumentParser
import Foundation
import VMM

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Benchmarks against QEMU, run in the same invocation. They report; they never fail for being slow.",
    subcommands: [BenchCPU.self, BenchBoot.self])
}

/// A guest run measured in-process on the interpreter.
struct GuestRun {
  var seconds: Double
  var instructions: UInt64
  var outcome: MachineOutcome
  var output: String
}

enum BenchSupport {
  static func runInterpreter(kernel: [UInt8], name: String, cmdline: String, memory: UInt64) throws
    -> GuestRun
  {
    var c = MachineConfig(kernel: kernel, kernelName: name, engine: .interpreter)
    c.commandLine = cmdline
    c.memorySize = memory
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    return GuestRun(
      seconds: m.wallSeconds, instructions: m.statistics()["instructions"] ?? 0, outcome: o,
      output: console.capturedText)
  }

  /// Wall seconds of a QEMU TCG run, or nil (with the reason) when QEMU is missing or fails.
  static func runQEMU(kernel: String, cmdline: String, memoryMiB: Int) -> (Double?, String) {
    guard
      let qemu = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]
        .first(where: { FileManager.default.isExecutableFile(atPath: $0) })
    else { return (nil, "qemu-system-x86_64 not installed") }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: qemu)
    p.arguments = [
      "-accel", "tcg", "-m", "\(memoryMiB)", "-display", "none", "-serial", "stdio", "-no-reboot",
      "-kernel", kernel, "-append", cmdline, "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
    ]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    let start = DispatchTime.now().uptimeNanoseconds
    do { try p.run() } catch { return (nil, "cannot start QEMU: \(error)") }
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    return (secs, String(decoding: out, as: UTF8.self))
  }

  static func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
  static func pad(_ s: String, _ n: Int) -> String {
    s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
  }
}

struct BenchCPU: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cpu",
    abstract:
      "CPU-bound guest suite on the interpreter and on QEMU TCG: guest MIPS and time ratios.")

  @Option(help: "Directory with the bench_*.elf guests (built by Guests/build.sh).")
  var guests: String = "Guests/build"
  @Option(help: "Divide each workload's default size by this (the guests' div= parameter).")
  var div: Int = 20
  @Option(help: "QEMU runs this many times the work for its timing (its start-up is then noise).")
  var qemuScale: Int = 10
  @Option(help: "Comma-separated workloads.")
  var only: String = "loop,sort,crc32,mem,chase"
  @Option(help: "Write the figures as JSON to this file.")
  var json: String?
  @OptionGroup var logging: LoggingOptions

  func run() throws {
    _ = try logging.bootstrap()
    let workloads = only.split(separator: ",").map(String.init)
    let memory: UInt64 = 256 << 20
    var rows: [[String: Any]] = []
    // QEMU's own start-up and teardown, measured on the trivial guest, is taken off its times.
    let helloPath = guests + "/hello.elf"
    let (qemuBase, _) = BenchSupport.runQEMU(kernel: helloPath, cmdline: "", memoryMiB: 256)
    if let b = qemuBase { print("QEMU start-up baseline (hello.elf): \(BenchSupport.fmt(b, 3)) s") }
    print(
      "workload   guest instr     SwiftVMM s   MIPS     QEMU s (est.)  ratio SwiftVMM/QEMU")
    var ratios: [Double] = []
    for w in workloads {
      let path = "\(guests)/bench_\(w).elf"
      guard let data = FileManager.default.contents(atPath: path) else {
        fail("missing \(path); run Guests/build.sh", status: .unusableInput)
      }
      let cmd = "div=\(div)"
      let r = try BenchSupport.runInterpreter(
        kernel: [UInt8](data), name: path, cmdline: cmd, memory: memory)
      guard case .debugExit(status: 1) = r.outcome else {
        print("\(w): guest did not finish cleanly: \(r.outcome)\n\(r.output)")
        continue
      }
      let mips = Double(r.instructions) / r.seconds / 1e6
      // Same work once, to check the result; then `qemuScale` times the work, so QEMU's
      // compute time dwarfs its start-up and the per-unit figure is not noise.
      let (q, qout) = BenchSupport.runQEMU(kernel: path, cmdline: cmd, memoryMiB: 256)
      var qemuNet: Double?
      if q != nil {
        let (qs, _) = BenchSupport.runQEMU(
          kernel: path, cmdline: "scale=\(qemuScale) \(cmd)", memoryMiB: 256)
        if let qs { qemuNet = max(qs - (qemuBase ?? 0), 0.001) / Double(qemuScale) }
      }
      let sameResult = qout.contains(r.output.trimmingCharacters(in: .whitespacesAndNewlines))
      var line =
        BenchSupport.pad(w, 10) + " " + BenchSupport.pad(String(r.instructions), 15) + " "
        + BenchSupport.pad(BenchSupport.fmt(r.seconds), 12) + " "
        + BenchSupport.pad(BenchSupport.fmt(mips, 1), 8) + " "
      var row: [String: Any] = [
        "workload": w, "instructions": r.instructions, "seconds": r.seconds, "mips": mips,
      ]
      if let qemuNet {
        let ratio = r.seconds / qemuNet
        ratios.append(ratio)
        line +=
          BenchSupport.pad(BenchSupport.fmt(qemuNet, 3), 14) + " " + BenchSupport.fmt(ratio, 1)
          + "x"
        if !sameResult { line += "  (results differ!)" }
        row["qemuSeconds"] = qemuNet
        row["ratio"] = ratio
      } else {
        line += "QEMU unavailable: \(qout)"
      }
      print(line)
      rows.append(row)
    }
    if !ratios.isEmpty {
      let geo = exp(ratios.map { log($0) }.reduce(0, +) / Double(ratios.count))
      print("geometric mean ratio SwiftVMM/QEMU TCG: \(BenchSupport.fmt(geo, 1))x")
    }
    if let json {
      let data = try JSONSerialization.data(
        withJSONObject: ["div": div, "workloads": rows], options: [.prettyPrinted, .sortedKeys])
      try data.write(to: URL(fileURLWithPath: json))
    }
  }
}
