import ArgumentParser
import Boot
import Engine
import Foundation
import VMM

/// The main job: boot the Debian guest to an interactive busybox shell,
/// fetching and preparing it first when the cache lacks it.
struct LinuxCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "linux",
    abstract:
      "Boot Debian Linux to a busybox shell on the interpreter (fetches the guest if missing).",
    discussion: """
      The kernel and busybox come from Debian's linux-image-cloud-amd64 and busybox-static, \
      downloaded with apt-get into the cache on first use. Type `poweroff` to end the VM.
      """)

  @Option(help: "Guest cache directory (default: $SWIFTVMM_CACHE or ~/.cache/swiftvmm/linux).")
  var cache: String?
  @Option(help: "Guest memory, e.g. 512M.")
  var memory: String = "512M"
  @Option(help: "Boot protocol: bzImage (64-bit entry) or pvh.")
  var `protocol`: String = "bzImage"
  @Option(help: "CPUID policy: a name (default, kvm, minimal) or a JSON file.")
  var cpuid: String = "kvm"
  @Option(
    name: .customLong("run"),
    help: "Shell commands to run instead of the interactive shell; the VM powers off after them.")
  var commands: String?
  @Option(help: "Extra kernel command-line arguments.")
  var append: String = ""
  @Option(help: "Write engine and VMM counters to this JSON file when the VM stops.")
  var stats: String?
  @Flag(help: "Instruction-count time (interpreter): repeatable runs, RTC at a fixed date.")
  var deterministic = false
  @OptionGroup var mmuOptions: MMUOptions
  @OptionGroup var consoleOptions: ConsoleOptions
  @OptionGroup var logging: LoggingOptions

  static let interactiveInit = StandardInitramfs.initScript(
    commands: """
      # The host terminal's size, from swiftvmm.rows/cols on the command line.
      for a in $(cat /proc/cmdline); do
        case $a in
          swiftvmm.rows=*) rows=${a#*=} ;;
          swiftvmm.cols=*) cols=${a#*=} ;;
        esac
      done
      [ -n "$rows" ] && [ -n "$cols" ] && stty -F /dev/ttyS0 rows $rows cols $cols
      echo
      echo "SwiftVMM: Debian $(uname -r) on the interpreter. Type 'poweroff' to stop."
      # cttyhack opens the console's real tty, so the shell has a controlling terminal.
      setsid cttyhack sh -l
      """)

  /// With no init process to signal, `poweroff` and `reboot` act at once (-f).
  static let profile = CPIOEntry(
    "etc/profile",
    .file(
      Array(
        "alias poweroff='poweroff -f'\nalias reboot='reboot -f'\nalias halt='poweroff -f'\n".utf8)))

  func run() throws {
    let logger = try logging.bootstrap()
    guard let proto = LinuxBootProtocol(rawValue: `protocol`.lowercased()) else {
      throw ValidationError("unknown boot protocol '\(`protocol`)'; choose bzImage or pvh")
    }
    let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
    var guest = LinuxGuestImages.locate(in: dir)
    if guest == nil {
      FileHandle.standardError.write(Data("swiftvmm: fetching the Debian guest into \(dir)\n".utf8))
      do {
        guest = try LinuxGuestFetcher(
          cache: dir, log: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        )
        .fetch()
      } catch {
        fail("cannot fetch the Debian guest: \(error)", status: 66)
      }
    }
    guard let guest else { fail("the Debian guest is incomplete in \(dir)", status: 66) }
    let script =
      commands.map { StandardInitramfs.initScript(commands: $0) } ?? LinuxCommand.interactiveInit
    let initrd: [UInt8]
    do {
      initrd = try StandardInitramfs.build(
        guest: guest, initScript: script, gzip: false, extraFiles: [LinuxCommand.profile])
    } catch {
      fail("cannot build the initramfs: \(error)", status: 66)
    }
    guard let kernel = FileManager.default.contents(atPath: guest.bzImage) else {
      fail("cannot read \(guest.bzImage)", status: 66)
    }
    var config = MachineConfig(
      kernel: [UInt8](kernel), kernelName: guest.bzImage, engine: .interpreter)
    config.initrd = initrd
    config.linuxProtocol = proto
    // The boot log shows progress for the 30-60 s before the prompt.
    var cmdline = "console=ttyS0 panic=-1"
    if let size = HostTerminal.size() {
      cmdline += " swiftvmm.rows=\(size.rows) swiftvmm.cols=\(size.cols)"
    }
    config.commandLine = "\(cmdline) \(append)"
    config.deterministic = deterministic
    do {
      config.memorySize = try MemorySize.parse(memory)
      config.cpuid = try CPUIDPolicy.load(nameOrPath: cpuid)
    } catch {
      fail("\(error)", status: 66)
    }
    let translate = try mmuOptions.apply(to: &config)
    runInteractively(
      config, console: consoleOptions, logger: logger, stats: stats, translate: translate)
  }
}
