import ArgumentParser
import Boot
import Engine
import Foundation
import Logging
import Memory
import VMM

struct Run: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Boot a guest kernel. Without --kernel, runs the embedded demo guest.",
    discussion: """
      Exit status: the guest's isa-debug-exit status ((v << 1) | 1) if it used it; \
      0 on poweroff, on reset with --no-reboot, or on Ctrl-A x; 2 if the guest failed \
      (triple fault, halted forever); 4 if a watchdog fired; 66 for unusable input; \
      128+N when stopped by signal N (129 SIGHUP, 130 SIGINT, 131 SIGQUIT, 143 SIGTERM).
      """)

  @Option(help: "Kernel image: Linux bzImage or PVH vmlinux, multiboot v1, or a plain ELF64.")
  var kernel: String?
  @Option(help: "Initial ramdisk (Linux initrd, or a multiboot module).")
  var initrd: String?
  @Option(help: "Kernel command line.")
  var cmdline: String = ""
  @Option(help: "Guest memory, e.g. 256M or 1G.")
  var memory: String = "256M"
  @Option(help: "Number of vCPUs.")
  var cpus: Int = 1
  @Option(
    help:
      "CPU engine: kvm or interpreter (default: kvm with hardware virtualization, else interpreter)."
  )
  var engine: String?
  @Option(
    help:
      "CPUID policy: a name (default, kvm, minimal) or a JSON file. Without it, the default policy less what the engine lacks."
  )
  var cpuid: String?
  @Option(help: "Interpreter watchdog: stop after this many guest instructions.")
  var maxInstructions: UInt64?
  @Option(help: "Wall-clock watchdog in seconds.")
  var timeout: Double?
  @Option(help: "Write engine and VMM counters to this JSON file when the VM stops.")
  var stats: String?
  @Flag(help: "Instruction-count time (interpreter): repeatable runs, RTC at a fixed date.")
  var deterministic = false
  @OptionGroup var mmuOptions: MMUOptions
  @OptionGroup var consoleOptions: ConsoleOptions
  @OptionGroup var logging: LoggingOptions

  func run() throws {
    let logger = try logging.bootstrap()
    let engineKind: EngineKind
    if let e = engine {
      guard let k = EngineKind(rawValue: e) else {
        throw ValidationError("unknown engine '\(e)'; choose kvm or interpreter")
      }
      engineKind = k
    } else {
      engineKind = EngineSelection.best()
    }
    let memorySize: UInt64
    do {
      memorySize = try MemorySize.parse(memory)
    } catch {
      fail("--memory: \(error)", status: 66)
    }
    guard cpus >= 1 else { throw ValidationError("--cpus must be at least 1") }

    var config: MachineConfig
    if let path = kernel {
      config = MachineConfig(
        kernel: readInput(path, what: "kernel"), kernelName: path, engine: engineKind)
    } else {
      guard let bytes = Data(base64Encoded: EmbeddedGuest.base64) else {
        fail("the embedded demo guest is corrupt", status: 70)
      }
      config = MachineConfig(
        kernel: [UInt8](bytes), kernelName: EmbeddedGuest.name, engine: engineKind)
    }
    if let initrd { config.initrd = readInput(initrd, what: "initrd") }
    config.commandLine = cmdline
    do {
      config.cpuid = try cpuid.map { try CPUIDPolicy.load(nameOrPath: $0) }
    } catch {
      fail("--cpuid: \(error)", status: 66)
    }
    config.memorySize = memorySize
    config.cpus = cpus
    config.maxInstructions = maxInstructions
    config.timeout = timeout
    config.deterministic = deterministic
    let translate = try mmuOptions.apply(to: &config)

    runInteractively(
      config, console: consoleOptions, logger: logger, stats: stats, translate: translate)
  }

  private func readInput(_ path: String, what: String) -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else {
      fail("\(what) '\(path)' does not exist", status: 66)
    }
    guard let d = FileManager.default.contents(atPath: path) else {
      fail("\(what) '\(path)' cannot be read", status: 66)
    }
    return [UInt8](d)
  }
}

/// Builds the machine, attaches the host terminal, runs it and exits with its status.
func runInteractively(
  _ config: MachineConfig, console options: ConsoleOptions, logger: Logger, stats: String?,
  translate: UInt64? = nil
)
  -> Never
{
  let escape: ConsoleEscape
  do {
    escape = try options.escape()
  } catch {
    fail("\(error)", status: 64)
  }
  let console = ConsoleOutput(fd: 1)
  let session: VMSession
  do {
    session = try VMSession(
      config: config, console: console, reboot: !options.noReboot, logger: logger)
  } catch let e as BootError {
    fail("\(config.kernelName): \(e)", status: 66)
  } catch {
    fail("\(error)", status: 66)
  }

  let terminal = HostTerminal()
  if terminal.isTerminal, let key = escape.key {
    let k = ConsoleEscape.name(key)
    FileHandle.standardError.write(
      Data("swiftvmm: console on this terminal; \(k) x quits, \(k) h for help\n".utf8))
  }
  session.setInputOpen(true)
  terminal.start(
    escape: escape,
    onInput: { session.feedInput($0) },
    onCommand: { command in
      switch command {
      case .quit: session.requestStop(.userQuit)
      case .help: console.writeDirectly("\n" + escape.helpText() + "\n")
      }
    },
    onEnd: { session.setInputOpen(false) },
    onSignal: { session.requestStop(.signal($0)) })
  let outcome = session.run()
  let machine = session.machine
  terminal.restore()
  if outcome.printsRegisters, let dump = machine.registerDump() {
    FileHandle.standardError.write(Data(dump.utf8))
  }
  if let translate { print(machine.translate(translate)) }

  if let stats {
    writeStats(machine, outcome: outcome, to: stats)
  }
  if let m = outcome.message {
    FileHandle.standardError.write(Data("swiftvmm: \(m)\n".utf8))
  }
  Foundation.exit(outcome.exitStatus)
}

func writeStats(_ machine: Machine, outcome: MachineOutcome, to path: String) {
  var doc: [String: Any] = [
    "engine": machine.cpu.engineName,
    "outcome": outcome.description,
    "exitStatus": Int(outcome.exitStatus),
    "wallSeconds": machine.wallSeconds,
  ]
  doc["counters"] = machine.statistics().mapValues { NSNumber(value: $0) }
  do {
    let data = try JSONSerialization.data(
      withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: path))
  } catch {
    FileHandle.standardError.write(Data("swiftvmm: cannot write stats to \(path): \(error)\n".utf8))
  }
}
