import ArgumentParser
import Boot
import Engine
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// Boot-to-poweroff of the Debian guest on the interpreter, the translator and QEMU TCG, in
/// one invocation.
struct BenchBoot: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "boot",
    abstract:
      "Boot the Debian guest to poweroff on the interpreter, the translator and QEMU TCG; print times and ratios."
  )

  @Option(help: "Guest cache directory (default: $SWIFTVMM_CACHE or ~/.cache/swiftvmm/linux).")
  var cache: String?
  @Option(
    help: ArgumentHelp(
      "Guest memory, as for `run`: a bare number is MiB; K, M, G (or KiB, MiB, GiB) name the unit.",
      valueName: "size"))
  var memory: String = "512M"
  @Option(help: "Runs of each variant (the median is reported).")
  var runs: Int = 1
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

  func run() throws {
    _ = try logging.bootstrap()
    let memoryBytes: UInt64
    do {
      memoryBytes = try MemorySize.parse(memory)
    } catch {
      BenchBoot.usageError("--memory: \(error)")
    }
    guard runs >= 1, runs <= 1000 else {
      BenchBoot.usageError("--runs \(runs): between 1 and 1000")
    }
    if let json { OutputFile.checkWritable(json, what: "--json") }
    let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
    guard let guest = LinuxGuestImages.locate(in: dir) else {
      fail(
        "the Debian guest is not in \(dir); run `swiftvmm guest fetch-linux`",
        status: .unusableInput)
    }
    let initrd = try StandardInitramfs.build(
      guest: guest, initScript: StandardInitramfs.initScript(commands: "echo SWIFTVMM-BOOT-OK"),
      gzip: false)
    let initrdPath = NSTemporaryDirectory() + "swiftvmm-bench-initrd-\(getpid()).cpio"
    try Data(initrd).write(to: URL(fileURLWithPath: initrdPath))
    defer { try? FileManager.default.removeItem(atPath: initrdPath) }
    guard let kernel = FileManager.default.contents(atPath: guest.bzImage) else {
      fail("cannot read \(guest.bzImage)", status: .unusableInput)
    }
    let cmdline = "console=ttyS0 panic=-1"

    var variants = [Variant(name: "bzImage, kvm-clock", proto: .bzImage, policy: "kvm")]
    if self.variants {
      variants.append(Variant(name: "PVH, kvm-clock", proto: .pvh, policy: "kvm"))
      variants.append(Variant(name: "bzImage, no kvm-clock", proto: .bzImage, policy: "default"))
    }

    // QEMU first: its figure is the yardstick for every variant.
    var qemuTimes: [Double] = []
    var qemuRSS = 0
    for _ in 0..<runs {
      let (t, out, rss) = runQEMU(
        kernel: guest.bzImage, initrd: initrdPath, cmdline: cmdline, memoryBytes: memoryBytes)
      guard let t, out.contains("SWIFTVMM-BOOT-OK") else {
        print("QEMU TCG: did not boot (\(t == nil ? out : "no marker"))")
        qemuTimes = []
        break
      }
      qemuTimes.append(t)
      qemuRSS = max(qemuRSS, rss)
    }
    let qemu = median(qemuTimes)
    if let qemu {
      print(BenchSupport.pad("QEMU TCG", 34) + " \(fmt(qemu)) s   peak RSS \(qemuRSS / 1024) MiB")
    }
    var rows: [[String: Any]] = []
    for v in variants {
      var interpreterSeconds: Double?
      for engine in Self.engines {
        guard
          let t = try bootRow(
            v, engine: engine, kernel: kernel, initrd: initrd,
            cmdline: cmdline, memoryBytes: memoryBytes, qemu: qemu, base: interpreterSeconds,
            rows: &rows)
        else { continue }
        if engine == .interpreter { interpreterSeconds = t }
      }
    }
    let systemDoc =
      system ? try benchSystem(guest: guest, cache: dir, memoryMiB: memoryBytes >> 20) : nil
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    print("SwiftVMM peak RSS \(usage.ru_maxrss / 1024) MiB")
    if let json {
      var doc: [String: Any] = ["swiftvmm": rows, "peakRSSKiB": usage.ru_maxrss]
      if let qemu { doc["qemuSeconds"] = qemu; doc["qemuPeakRSSKiB"] = qemuRSS }
      if let systemDoc { doc["debianSystemToLogin"] = systemDoc }
      let data = try JSONSerialization.data(
        withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
      OutputFile.write([UInt8](data), to: json, what: "--json")
    }
  }

  /// The software engines measured, the interpreter first (the translator's yardstick).
  static let engines: [EngineKind] = [.interpreter, .translator]

  /// Boots variant `v` on `engine` `runs` times, prints its row and appends it to `rows`;
  /// returns the median seconds, or nil when a boot failed (said on stdout).
  func bootRow(
    _ v: Variant, engine: EngineKind, kernel: Data, initrd: [UInt8], cmdline: String,
    memoryBytes: UInt64, qemu: Double?, base: Double?, rows: inout [[String: Any]]
  ) throws -> Double? {
    var times: [Double] = []
    var instructions: UInt64 = 0
    for _ in 0..<runs {
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
      guard o == .powerOff, console.capturedText.contains("SWIFTVMM-BOOT-OK") else {
        print(
          "\(v.name), \(engine.rawValue): did not reach poweroff: \(o)\n"
            + String(console.capturedText.suffix(1500)))
        return nil
      }
      times.append(m.wallSeconds)
      instructions = m.statistics()["instructions"] ?? 0
    }
    guard let t = median(times) else { return nil }
    var line = BenchSupport.pad("\(v.name), \(engine.rawValue)", 34) + " \(fmt(t)) s"
    line += "   \(instructions) instructions   \(fmt(Double(instructions) / t / 1e6, 1)) MIPS"
    var row: [String: Any] = [
      "variant": v.name, "engine": engine.rawValue, "seconds": t, "instructions": instructions,
    ]
    if let qemu {
      line += "   \(fmt(t / qemu, 1))x QEMU"
      row["ratio"] = t / qemu
    }
    if let base, engine != .interpreter {
      line += "   \(fmt(t / base, 2))x interpreter"
      row["ratioToInterpreter"] = t / base
    }
    print(line)
    rows.append(row)
    return t
  }

  func median(_ v: [Double]) -> Double? { v.isEmpty ? nil : BenchMeasure.median(v) }

  func fmt(_ v: Double, _ d: Int = 2) -> String { BenchSupport.fmt(v, d) }

  /// Wall seconds, output and peak RSS (KiB) of one QEMU TCG boot.
  func runQEMU(kernel: String, initrd: String, cmdline: String, memoryBytes: UInt64) -> (
    Double?, String, Int
  ) {
    guard let qemu = BenchMeasure.qemuPath else {
      return (nil, "qemu-system-x86_64 not installed", 0)
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: qemu)
    p.arguments = [
      "-accel", "tcg", "-m", "\(memoryBytes >> 20)M", "-display", "none", "-serial", "stdio",
      "-no-reboot",
      "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
    ]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    let start = DispatchTime.now().uptimeNanoseconds
    do { try p.run() } catch { return (nil, "cannot start QEMU: \(error)", 0) }
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    var usage = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &usage)
    return (secs, String(decoding: out, as: UTF8.self), usage.ru_maxrss)
  }
}
