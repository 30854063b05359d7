import Boot
import Engine

/// Which CPU engine runs the guest.
public enum EngineKind: String, CaseIterable, Sendable {
  case kvm
  case interpreter
  /// The interpreter with register-only blocks compiled to host code (Sources/Translator).
  case translator
}

/// Everything needed to build and run one VM.
public struct MachineConfig {
  /// The kernel image's bytes, and a name for messages.
  public var kernel: [UInt8]
  public var kernelName: String
  public var initrd: [UInt8]?
  /// Multiboot modules after the initrd, each with its own string (`--module 'FILE ARGS'`).
  public var modules: [MultibootLoader.Module] = []
  /// The kernel command line as the user gave it. Multiboot kernels see it
  /// after their own name, as QEMU and GRUB pass it.
  public var commandLine: String = ""
  /// Linux only: bzImage or PVH entry (nil = the image's own protocol).
  public var linuxProtocol: LinuxBootProtocol?
  public var memorySize: UInt64 = 256 << 20
  public var cpus: Int = 1
  public var engine: EngineKind
  /// The guest's CPUID policy; nil = the default policy less what the engine lacks.
  /// An explicit policy is refused if it claims a feature the engine cannot provide.
  public var cpuid: CPUIDPolicy?
  /// Interpreter watchdog: stop after this many guest instructions.
  public var maxInstructions: UInt64?
  /// Wall-clock watchdog in seconds (nil = none).
  public var timeout: Double?
  /// Memory virtualization (interpreter): nil = the engine's own (direct for the
  /// interpreter, nested for KVM, which is what the hardware does).
  public var mmuMode: MMUMode?
  /// Shadow mode: most shadow pages before they are all zapped (nil = the
  /// default; set only in shadow mode, see `validate()`).
  public var shadowPageCap: Int?
  public static let defaultShadowPageCap = 4096
  public var effectiveShadowPageCap: Int { shadowPageCap ?? MachineConfig.defaultShadowPageCap }
  /// Nested mode: cache nested translations of guest page-table pages.
  public var nestedWalkCache = false
  /// Seed for the scattered guest-frame layout (nested, shadow).
  public var frameSeed: UInt64 = 0x5EED_F4A3
  /// Instruction-count time instead of host time (interpreter only): guest
  /// time advances with retired instructions, the RTC starts at a fixed date,
  /// and two runs execute the same instructions.
  public var deterministic = false
  /// Translator only, for tests: run every block in the interpreter too and compare.
  public var translatorLockstep = false
  /// QEMU's test-only interfaces (fw_cfg), which kvm-unit-tests reads.
  public var qemuCompat = false
  /// virtio-pci disks, console and entropy device (interpreter's PCI platform).
  public var virtio = VirtioConfig()
  /// The RTC's and kvm-clock's wall-clock date at boot in deterministic mode.
  public static let deterministicEpoch: Int64 = 1_767_225_600  // 2026-01-01T00:00:00Z

  public init(kernel: [UInt8], kernelName: String, engine: EngineKind) {
    self.kernel = kernel
    self.kernelName = kernelName
    self.engine = engine
  }
}
