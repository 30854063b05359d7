import ArgumentParser
import Engine
import Foundation
import VMM

/// The machine options `run`, `linux` and `mmu-compare` share, with one meaning each.
struct VMOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Guest memory: a bare number is MiB; K, M, G (or KiB, MiB, GiB) name the unit, e.g. 512, 512M, 1G.",
      valueName: "size"))
  var memory: String?
  @Option(help: "Number of vCPUs.")
  var cpus: Int = 1
  @Option(
    help:
      "CPU engine: kvm, interpreter or translator (run: kvm with hardware virtualization, else translator; linux: translator, since Linux on our KVM platform is untested; mmu-compare: interpreter)."
  )
  var engine: String?
  @Option(
    help:
      "CPUID policy: a name (default, kvm, minimal) or a JSON file (docs/CPUID.md). Without it, the default policy less what the engine lacks."
  )
  var cpuid: String?
  @Flag(help: "Instruction-count time (interpreter): repeatable runs, RTC at a fixed date.")
  var deterministic = false
  @Flag(help: .hidden)  // translator test mode: every block checked against the interpreter
  var lockstep = false
  @Option(help: "Interpreter watchdog: stop after this many guest instructions.")
  var maxInstructions: UInt64?
  @Option(help: "Wall-clock watchdog in seconds.")
  var timeout: Double?
  @Option(
    help: "Write engine and VMM counters to this JSON file when the VM stops (docs/STATS.md).")
  var stats: String?
  @Option(help: "Kernel command line.")
  var cmdline: String?
  @OptionGroup var mmuOptions: MMUOptions
  @OptionGroup(title: "Debugging") var gdbOptions: GDBOptions

  /// What a subcommand assumes when the user does not say.
  struct Defaults {
    var memory = "256M"
    var engine: EngineKind? = nil  // nil: the best this host offers
    var cpuid: String? = nil
  }

  /// Fills `config` from the options and validates the whole configuration
  /// before any guest runs. Usage mistakes exit 64 with `command`'s usage;
  /// an unusable policy file exits 66; an unwritable --stats path exits 73.
  /// Returns the address to translate when the VM stops, if any.
  func apply<C: ParsableCommand>(
    to config: inout MachineConfig, defaults: Defaults, command: C.Type
  ) -> UInt64? {
    if let e = engine {
      guard let k = EngineKind(rawValue: e) else {
        C.usageError("unknown engine '\(e)'; choose kvm, interpreter or translator")
      }
      config.engine = k
    } else {
      config.engine = defaults.engine ?? EngineSelection.best()
    }
    do {
      config.memorySize = try MemorySize.parse(memory ?? defaults.memory)
    } catch {
      C.usageError("--memory: \(error)")
    }
    config.cpus = cpus
    config.maxInstructions = maxInstructions
    config.timeout = timeout
    config.deterministic = deterministic
    config.translatorLockstep = lockstep
    if let cmdline { config.commandLine = cmdline }
    let translate: UInt64?
    do {
      translate = try mmuOptions.apply(to: &config)
    } catch {
      C.usageError("\(error)")
    }
    do {
      try config.validate()
    } catch {
      C.usageError("\(error)")
    }
    do {
      config.cpuid = try (cpuid ?? defaults.cpuid).map { try CPUIDPolicy.load(nameOrPath: $0) }
    } catch {
      fail("--cpuid: \(error)", status: .unusableInput)
    }
    if let stats { OutputFile.checkWritable(stats, what: "--stats") }
    return translate
  }
}
