import ArgumentParser
import Boot
import Engine
import Foundation
import Logging
import Memory
@_spi(Command) import SwiftVMMKit
import VMM

struct Run: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Boot a guest kernel. Without --kernel, runs the embedded demo guest.",
    discussion: """
      Exit status: the guest's isa-debug-exit status ((v << 1) | 1) if it used it; \
      0 on poweroff, on reset with --no-reboot, or on Ctrl-A x; 2 if the guest failed \
      (triple fault, halted forever); 4 if a watchdog fired; 64 usage error, 66 unusable input, \
      73 an output file cannot be written; 128+N when stopped by signal N (129 SIGHUP, \
      130 SIGINT, 131 SIGQUIT, 143 SIGTERM). See README.
      """)

  @Option(help: "Kernel image: Linux bzImage or PVH vmlinux, multiboot v1, or a plain ELF64.")
  var kernel: String?
  @Option(help: "Initial ramdisk (Linux initrd, or a multiboot module).")
  var initrd: String?
  @Option(
    help: "A Firecracker-style JSON config file describing the machine (README, Config file).")
  var config: String?
  @Option(
    help: ArgumentHelp(
      "Serve the Firecracker-compatible API on this Unix socket (README, API socket).",
      valueName: "path"))
  var apiSock: String?
  @Option(
    name: .customLong("module"),
    help: ArgumentHelp(
      "A multiboot module and its command line: 'FILE [ARGS]'. Repeatable, in order.",
      discussion:
        "The module's string is the whole value, as with QEMU's -initrd \"FILE ARGS,FILE2\"."))
  var modules: [String] = []
  @OptionGroup var vm: VMOptions
  @Flag(
    help:
      "QEMU's test interfaces that kvm-unit-tests reads (fw_cfg at ports 0x510-0x511). Off by default: they are QEMU devices, not a PC's."
  )
  var qemuCompat = false
  @OptionGroup(title: "Devices") var virtioOptions: VirtioOptions
  @OptionGroup(title: "Console") var consoleOptions: ConsoleOptions
  @OptionGroup(title: "Snapshots") var snapshotOptions: SnapshotOptions
  @OptionGroup var logging: LoggingOptions

  func run() throws {
    let logger = try logging.bootstrap()
    if apiSock != nil && (vm.gdbOptions.gdb != nil || vm.gdbOptions.gdbWait) {
      Run.usageError("--gdb cannot be combined with --api-sock yet")
    }
    if let config {
      if let stats = vm.stats { OutputFile.checkWritable(stats, what: "--stats") }
      let (spec, machine) = configFromFile(config)
      if let apiSock { serveAPI(path: apiSock, spec: spec, config: machine, logger: logger) }
      runInteractively(
        machine, console: consoleOptions, logger: logger, stats: vm.stats,
        gdb: vm.gdbOptions.request(for: machine, command: Run.self))
    }
    if let apiSock, kernel == nil {
      if let flag = machineFlagsGiven.first {
        Run.usageError("\(flag) needs --kernel or --config; over --api-sock, PUT the configuration")
      }
      if let stats = vm.stats { OutputFile.checkWritable(stats, what: "--stats") }
      serveAPI(path: apiSock, spec: nil, config: nil, logger: logger)
    }
    var config = MachineConfig(kernel: [], kernelName: EmbeddedGuest.name, engine: .interpreter)
    let translate = vm.apply(to: &config, defaults: .init(), command: Run.self)
    if let path = kernel {
      config.kernel = readInput(path, what: "kernel")
      config.kernelName = path
    } else {
      guard let bytes = Data(base64Encoded: EmbeddedGuest.base64) else {
        fail("the embedded demo guest is corrupt", status: .internal)
      }
      config.kernel = [UInt8](bytes)
    }
    if let initrd { config.initrd = readInput(initrd, what: "initrd") }
    config.qemuCompat = qemuCompat
    for m in modules {
      let file = String(m.split(separator: " ", maxSplits: 1).first ?? "")
      config.modules.append(.init(bytes: readInput(file, what: "module"), name: m))
    }
    virtioOptions.apply(to: &config, command: Run.self)
    if let apiSock { serveAPI(path: apiSock, spec: nil, config: config, logger: logger) }
    snapshotOptions.check(config, command: Run.self)
    runInteractively(
      config, console: consoleOptions, logger: logger, stats: vm.stats, translate: translate,
      gdb: vm.gdbOptions.request(for: config, command: Run.self), snapshot: snapshotOptions)
  }

  private func readInput(_ path: String, what: String) -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else {
      fail("\(what) '\(path)' does not exist", status: .unusableInput)
    }
    guard let d = FileManager.default.contents(atPath: path) else {
      fail("\(what) '\(path)' cannot be read", status: .unusableInput)
    }
    return [UInt8](d)
  }
}

/// Builds the machine, attaches the host terminal, runs it and exits with its status.
func runInteractively(
  _ config: MachineConfig, console options: ConsoleOptions, logger: Logger, stats: String?,
  translate: UInt64? = nil, gdb: GDBRequest? = nil, snapshot: SnapshotOptions? = nil
)
  -> Never
{
  let vm: VirtualMachine
  do {
    vm = try makeVM(config, console: options, logger: logger)
  } catch {
    fail(error.description, status: .unusableInput)
  }
  runVM(vm, console: options, stats: stats, translate: translate, gdb: gdb, snapshot: snapshot)
}

/// Builds the machine (kernel loaded, devices attached) without running it; its
/// console is this process's standard output.
func makeVM(_ config: MachineConfig, console options: ConsoleOptions, logger: Logger)
  throws(VirtualMachineError) -> VirtualMachine
{
  try VirtualMachine(
    config, console: .fileDescriptor(1), rebootOnReset: !options.noReboot, logger: logger)
}

/// Attaches the host terminal, runs the VM and exits with its status;
/// `atEnd` runs just before the exit.
func runVM(
  _ vm: VirtualMachine, console options: ConsoleOptions, stats: String?, translate: UInt64? = nil,
  gdb: GDBRequest? = nil, snapshot: SnapshotOptions? = nil, atEnd: () -> Void = {}
) -> Never {
  let escape: ConsoleEscape
  do {
    escape = try options.escape()
  } catch {
    fail("\(error)", status: .usage)
  }
  let terminal = HostTerminal()
  if terminal.isTerminal, let key = escape.key {
    let k = ConsoleEscape.name(key)
    FileHandle.standardError.write(
      Data("swiftvmm: console on this terminal; \(k) x quits, \(k) h for help\n".utf8))
  }
  if let gdb {
    do {
      let shown = try vm.serveGDB(at: gdb.address, waitForDebugger: gdb.wait)
      let note = gdb.wait ? "; the guest waits for gdb to continue" : ""
      FileHandle.standardError.write(Data("swiftvmm: gdb server on \(shown)\(note)\n".utf8))
    } catch {
      fail("\(error)", status: .cannotCreateOutput)
    }
  }
  vm.stopAtInstruction = snapshot?.snapshotAt
  terminal.start(
    escape: escape,
    onInput: { vm.writeConsole($0) },
    onCommand: { command in
      switch command {
      case .quit: vm.stop(.consoleQuit)
      case .help: vm.writeConsoleMessage("\n" + escape.helpText() + "\n")
      case .snapshot: snapshot?.saveWhileRunning(vm)
      }
    },
    onEnd: { vm.closeConsoleInput() },
    onSignal: { vm.stop(.signal($0)) })
  let outcome = vm.run()
  terminal.restore()
  if let dump = outcome.registerDump {
    FileHandle.standardError.write(Data(dump.utf8))
  }
  if let translate { print(vm.translate(virtualAddress: translate)) }

  if let m = outcome.message {
    FileHandle.standardError.write(Data("swiftvmm: \(m)\n".utf8))
  }
  if outcome.stoppedAtInstruction != nil, let snapshot { snapshot.save(vm) }
  // A stats file that cannot be written makes the run fail (73), not pass silently.
  if let stats {
    OutputFile.write(vm.statisticsReport(), to: stats, what: "--stats")
  }
  atEnd()
  Foundation.exit(outcome.exitStatus)
}
