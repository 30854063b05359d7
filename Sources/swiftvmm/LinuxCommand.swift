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
      "Boot Debian Linux to a busybox shell (fetches the guest if missing).",
    discussion: """
      The kernel and busybox come from Debian's linux-image-cloud-amd64 and busybox-static, \
      downloaded with apt-get into the cache on first use. Type `poweroff` to end the VM. \
      Defaults here: --memory 512M, --cpuid kvm, --engine translator; --cmdline is added \
      to the kernel's own command line.
      """)

  @Option(help: "Guest cache directory (default: $SWIFTVMM_CACHE or ~/.cache/swiftvmm/linux).")
  var cache: String?
  @Option(help: "Boot protocol: bzImage (64-bit entry) or pvh.")
  var `protocol`: String = "bzImage"
  @Option(
    name: .customLong("run"),
    help: "Shell commands to run instead of the interactive shell; the VM powers off after them.")
  var commands: String?
  @Flag(
    help: """
      Boot the Debian system image with systemd (root on /dev/vda): the --disk given first, \
      or <cache>/\(DebianRootfs.imageName) from `guest fetch-rootfs`.
      """)
  var root = false
  /// The old name of --cmdline here.
  @Option(help: .hidden)
  var append: String?
  @OptionGroup(title: "Machine options")
  var vm: VMOptions
  @OptionGroup(title: "Devices") var virtioOptions: VirtioOptions
  @OptionGroup(title: "Console") var consoleOptions: ConsoleOptions
  @OptionGroup(title: "Snapshots") var snapshotOptions: SnapshotOptions
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
      echo "SwiftVMM: Debian $(uname -r) on SwiftVMM. Type 'poweroff' to stop."
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
    if append != nil && vm.cmdline != nil {
      LinuxCommand.usageError("give --cmdline or its old name --append, not both")
    }
    var config = MachineConfig(kernel: [], kernelName: "", engine: .interpreter)
    let translate = vm.apply(
      to: &config, defaults: .init(memory: "512M", engine: .translator, cpuid: "kvm"),
      command: LinuxCommand.self)
    // Checked here, not in validate(): it is about Linux, not the configuration.
    if let why = KVMPlatformLimits.linuxRefusal(engine: config.engine) {
      LinuxCommand.usageError(why)
    }
    if root && commands != nil {
      LinuxCommand.usageError("give --root or --run, not both: --root starts the image's systemd")
    }
    guard let proto = LinuxBootProtocol(rawValue: `protocol`.lowercased()) else {
      LinuxCommand.usageError("unknown boot protocol '\(`protocol`)'; choose bzImage or pvh")
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
        fail("cannot fetch the Debian guest: \(error)", status: .fetchFailed)
      }
    }
    guard let guest else {
      fail("the Debian guest is incomplete in \(dir)", status: .unusableInput)
    }
    var devices = virtioOptions
    let script: String
    if root {
      script = DebianRootfs.rootInitScript(moduleList: StandardInitramfs.moduleListPath)
      if devices.disks.isEmpty {
        let image = dir + "/" + DebianRootfs.imageName
        guard FileManager.default.fileExists(atPath: image) else {
          fail(
            "no --disk and no \(image); build it with `sudo swiftvmm guest fetch-rootfs`",
            status: .unusableInput)
        }
        devices.disks = [image]
      }
    } else {
      script =
        commands.map { StandardInitramfs.initScript(commands: $0) } ?? LinuxCommand.interactiveInit
    }
    let initrd: [UInt8]
    do {
      initrd = try StandardInitramfs.build(
        guest: guest, initScript: script, gzip: false, extraFiles: [LinuxCommand.profile])
    } catch {
      fail("cannot build the initramfs: \(error)", status: .unusableInput)
    }
    guard let kernel = FileManager.default.contents(atPath: guest.bzImage) else {
      fail("cannot read \(guest.bzImage)", status: .unusableInput)
    }
    config.kernel = [UInt8](kernel)
    config.kernelName = guest.bzImage
    config.initrd = initrd
    config.linuxProtocol = proto
    devices.apply(to: &config, command: LinuxCommand.self)
    // No `quiet`: the boot log shows progress for the 30-60 s before the prompt.
    var cmdline = "console=\(config.virtio.console == .virtio ? "hvc0" : "ttyS0") panic=-1"
    if let size = HostTerminal.size() {
      cmdline += " swiftvmm.rows=\(size.rows) swiftvmm.cols=\(size.cols)"
    }
    // The interpreter runs the guest far slower than hardware: systemd's 90 s start and
    // device timeouts would fail units (udev's /dev/ttyS0, networkd) that are only slow.
    if root { cmdline += " systemd.default_timeout_start_sec=900" }
    config.commandLine = "\(cmdline) \(vm.cmdline ?? append ?? "")"
    snapshotOptions.check(config, command: LinuxCommand.self)
    runInteractively(
      config, console: consoleOptions, logger: logger, stats: vm.stats, translate: translate,
      gdb: vm.gdbOptions.request(for: config, command: LinuxCommand.self),
      snapshot: snapshotOptions)
  }
}
