import Foundation
import Engine
import Glibc
import VMM

/// One measured run: CPU seconds (user + system), the guest's retired instructions when
/// the engine counts them, and what the guest printed.
struct BenchSample {
  var cpuSeconds: Double
  var instructions: UInt64?
  var ok: Bool
  var output: String
  /// Wall seconds, a secondary figure (the machine is shared; CPU time is the measure).
  var wallSeconds: Double = 0
  /// Peak resident set of a child, in KiB (0 for runs in this process).
  var peakRSSKiB = 0

  /// The guest's `result=...` line, the figure every engine must agree on.
  var result: String? {
    output.split(whereSeparator: \.isNewline).first { $0.contains("result=") }.map(String.init)
  }
}

enum BenchMeasure {
  /// This process's CPU time so far (all threads).
  static func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return seconds(u.ru_utime) + seconds(u.ru_stime)
  }

  static func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }

  /// Runs a guest in this process on one of SwiftVMM's engines.
  static func runEngine(
    _ engine: EngineKind, kernel: [UInt8], name: String, cmdline: String, memory: UInt64
  ) throws -> BenchSample {
    let before = processCPUSeconds()
    let start = DispatchTime.now().uptimeNanoseconds
    var c = MachineConfig(kernel: kernel, kernelName: name, engine: engine)
    c.commandLine = cmdline
    c.memorySize = memory
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    let cpu = processCPUSeconds() - before
    var ok = false
    if case .debugExit(status: 1) = o { ok = true }
    return BenchSample(
      cpuSeconds: cpu, instructions: m.statistics()["instructions"], ok: ok,
      output: console.capturedText,
      wallSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
  }

  /// Runs a program as a child and charges it the CPU time wait4 reports for it alone.
  /// `okStatus` is the exit status of a successful run; a child still running after
  /// `timeout` seconds is killed (not ok). Throws when it cannot start.
  static func runChild(
    _ path: String, _ args: [String], okStatus: Int32, timeout: Double = 1800
  ) throws -> BenchSample {
    let outPath = NSTemporaryDirectory() + "swiftvmm-bench-\(getpid()).out"
    defer { unlink(outPath) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([path] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let start = DispatchTime.now().uptimeNanoseconds
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else {
      throw BenchError.cannotStart("\(path): \(String(cString: strerror(rc)))")
    }
    // The watchdog only ever kills an unreaped child (whose pid cannot have been reused):
    // the child is reaped after the watchdog is cancelled on its own serial queue.
    let child = pid
    let watchdog = DispatchWorkItem { kill(child, SIGKILL) }
    let queue = DispatchQueue(label: "swiftvmm.bench.watchdog")
    queue.asyncAfter(deadline: .now() + timeout, execute: watchdog)
    var info = siginfo_t()
    while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
    queue.sync { watchdog.cancel() }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let wall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let exited = status & 0x7F == 0
    let code = (status >> 8) & 0xFF
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    return BenchSample(
      cpuSeconds: seconds(usage.ru_utime) + seconds(usage.ru_stime), instructions: nil,
      ok: exited && code == okStatus, output: out, wallSeconds: wall,
      peakRSSKiB: Int(usage.ru_maxrss))
  }

  /// The QEMU binary, if installed.
  static var qemuPath: String? {
    ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]
      .first(where: { FileManager.default.isExecutableFile(atPath: $0) })
  }

  /// QEMU's CPU model for our default CPUID policy as the software engines offer it.
  static var qemuCPUModel: String {
    CPUIDPolicy.default.masked(to: EngineFeatures.implemented(by: .interpreter)).qemuCPUModel
  }

  /// How every bench runs QEMU: TCG on one thread (our vCPUs share one thread too)
  /// with a CPU like our CPUID policy.
  static var qemuTCG: [String] { ["-accel", "tcg,thread=single", "-cpu", qemuCPUModel] }

  /// QEMU TCG arguments for a bench guest, with the debug-exit port the guests stop through.
  static func qemuArguments(kernel: String, cmdline: String, memoryMiB: Int) -> [String] {
    qemuTCG + [
      "-m", "\(memoryMiB)", "-display", "none",
      "-serial", "stdio", "-no-reboot", "-kernel", kernel, "-append", cmdline, "-device",
      "isa-debug-exit,iobase=0xf4,iosize=4",
    ]
  }
}

enum BenchError: Error, CustomStringConvertible {
  case cannotStart(String)
  var description: String {
    switch self {
    case .cannotStart(let s): return "cannot start \(s)"
    }
  }
}
