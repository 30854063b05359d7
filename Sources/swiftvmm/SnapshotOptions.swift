import ArgumentParser
import Foundation
@_spi(Command) import SwiftVMMKit
import VMM

/// `--snapshot-at` / `--snapshot-file` (run), and the console's escape-s save.
struct SnapshotOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "With --deterministic: stop after exactly N retired instructions, save the machine to --snapshot-file and exit with status 6.",
      valueName: "N"))
  var snapshotAt: UInt64?
  @Option(
    help: ArgumentHelp(
      "Where --snapshot-at and the console's escape-s save the machine ('swiftvmm restore FILE' resumes it).",
      valueName: "file"))
  var snapshotFile: String?

  func check<C: ParsableCommand>(_ config: MachineConfig, command: C.Type) {
    guard let n = snapshotAt else { return }
    if snapshotFile == nil { C.usageError("--snapshot-at \(n) needs --snapshot-file") }
    if !config.deterministic {
      C.usageError(
        "--snapshot-at needs --deterministic (an exact instruction needs instruction-count time)")
    }
  }

  /// After `--snapshot-at` stopped the machine: save it, or fail with 73.
  func save(_ vm: VirtualMachine) {
    guard let path = snapshotFile else { return }
    do {
      report(try vm.snapshot(to: path))
    } catch {
      fail("cannot save the snapshot to \(path): \(error)", status: .cannotCreateOutput)
    }
  }

  /// Escape-s: pause the running VM, save it on the vCPU thread, let it run on.
  func saveWhileRunning(_ vm: VirtualMachine) {
    guard let path = snapshotFile else {
      return note("no --snapshot-file given; nothing saved", raw: true)
    }
    DispatchQueue.global().async {
      guard vm.pause() else { return note("the VM has stopped; nothing saved", raw: true) }
      defer { vm.resume() }
      do {
        report(try vm.snapshot(to: path), raw: true)
      } catch {
        note("cannot save the snapshot to \(path): \(error)", raw: true)
      }
    }
  }

  private func report(_ s: VirtualMachine.SnapshotInfo, raw: Bool = false) {
    let mib = Double(s.bytes) / 1_048_576
    note(
      "saved snapshot \(s.path): \(String(format: "%.1f", mib)) MiB, \(s.pagesStored) of \(s.pagesTotal) pages, \(String(format: "%.3f", s.seconds)) s",
      raw: raw)
  }
}

/// `raw`: the terminal is in raw mode (the VM is running), so lines need CR LF.
private func note(_ text: String, raw: Bool = false) {
  let line = raw ? "\r\nswiftvmm: \(text)\r\n" : "swiftvmm: \(text)\n"
  FileHandle.standardError.write(Data(line.utf8))
}

struct Restore: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Resume a machine saved with --snapshot-at or the console's escape-s.",
    discussion: """
      The snapshot holds the machine's configuration, kernel, vCPUs, devices and memory; \
      --engine resumes it on another engine (interpreter and translator for every guest; \
      kvm for guests that need no emulated interrupt controller). A truncated, corrupt or \
      foreign snapshot is refused (66). Exit statuses as for 'run'.
      """)

  @Argument(help: "The snapshot file.")
  var file: String
  @Option(
    help: "Engine to resume on: interpreter, translator or kvm (default: the one it was saved on).")
  var engine: String?
  @Option(help: "Interpreter watchdog: stop once this many instructions have retired in all.")
  var maxInstructions: UInt64?
  @Option(help: "Wall-clock watchdog in seconds.")
  var timeout: Double?
  @Option(help: "Write engine and VMM counters to this JSON file when the VM stops.")
  var stats: String?
  @OptionGroup(title: "Console") var consoleOptions: ConsoleOptions
  @OptionGroup(title: "Snapshots") var snapshotOptions: SnapshotOptions
  @OptionGroup var logging: LoggingOptions

  func run() throws {
    let logger = try logging.bootstrap()
    var kind: VirtualMachine.Engine?
    if let e = engine {
      guard let k = VirtualMachine.Engine(rawValue: e), k != .automatic else {
        Restore.usageError("unknown engine '\(e)'; choose kvm, interpreter or translator")
      }
      kind = k
    }
    let start = DispatchTime.now().uptimeNanoseconds
    let vm: VirtualMachine
    do {
      vm = try VirtualMachine(
        restoring: file, engine: kind, maxInstructions: maxInstructions, timeout: timeout,
        console: .fileDescriptor(1), rebootOnReset: !consoleOptions.noReboot, logger: logger)
    } catch {
      fail("\(error)", status: .unusableInput)
    }
    if snapshotOptions.snapshotAt != nil && !vm.isDeterministic {
      Restore.usageError("--snapshot-at needs a snapshot saved with --deterministic")
    }
    if snapshotOptions.snapshotAt != nil && snapshotOptions.snapshotFile == nil {
      Restore.usageError("--snapshot-at needs --snapshot-file")
    }
    let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    note("restored \(file) in \(String(format: "%.1f", ms)) ms on \(vm.engineName)")
    runVM(vm, console: consoleOptions, stats: stats, snapshot: snapshotOptions)
  }
}
