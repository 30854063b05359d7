import CKVM
import Engine
import X86

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// What the host offers for the KVM engine: probed once, never crashes.
///
/// `/dev/kvm` can be backed by hardware virtualization (VT-x, AMD-V) or by
/// KVM-PVM, which runs guests without VMX/SVM by emulating them (slowly).
/// Only the former makes KVM the default engine.
public struct KVMHost: Sendable {
  public enum Kind: String, Sendable {
    case vmx = "Intel VT-x"
    case svm = "AMD-V"
    /// The kvm_pvm module, or KVM on a CPU without vmx/svm flags.
    case pvm = "KVM-PVM"
    /// No usable /dev/kvm.
    case none = "none"
    /// /dev/kvm works but the CPU flags could not be read.
    case unknown = "unknown"
  }

  public static let defaultDevicePath = "/dev/kvm"

  public let devicePath: String
  public let deviceExists: Bool
  /// Why /dev/kvm could not be opened or used; nil when it works.
  public let openError: String?
  public let apiVersion: Int32?
  public let kind: Kind
  /// How `kind` was decided.
  public let kindReason: String
  /// KVM-related kernel modules found under /sys/module.
  public let modules: [String]
  /// Selected KVM_CHECK_EXTENSION answers (name, value), on /dev/kvm.
  public let capabilities: [(name: String, value: Int32)]
  /// KVM_GET_SUPPORTED_CPUID, with `indexed` from KVM_CPUID_FLAG_SIGNIFCANT_INDEX.
  public let supportedCPUID: [CPUIDEntry]
  public let supportedCPUIDError: String?

  /// /dev/kvm opens and speaks the stable API (version 12).
  public var isUsable: Bool { openError == nil }

  /// True only with real VT-x/AMD-V behind a usable /dev/kvm: then KVM is the default engine.
  public var hardwareVirtualization: Bool { isUsable && (kind == .vmx || kind == .svm) }

  /// Probes the default device; the VMM uses this to choose its default engine.
  public static var hardwareVirtualization: Bool { probe().hardwareVirtualization }

  public static func probe(devicePath: String = KVMHost.defaultDevicePath) -> KVMHost {
    KVMHost(probing: devicePath)
  }

  private init(probing path: String) {
    devicePath = path
    deviceExists = hostPathExists(path)
    modules = ["kvm", "kvm_intel", "kvm_amd", "kvm_pvm"].filter {
      hostPathExists("/sys/module/\($0)")
    }

    var openError: String? = nil
    var api: Int32? = nil
    var caps: [(String, Int32)] = []
    var cpuid: [CPUIDEntry] = []
    var cpuidError: String? = nil
    if !deviceExists {
      openError = "\(path) does not exist (KVM module not loaded, or no KVM in this kernel)"
    } else {
      let fd = ckvm_open(path)
      if fd < 0 {
        var s = "cannot open \(path): \(errnoDescription(-fd))"
        if -fd == EACCES || -fd == EPERM { s += "; add the user to the kvm group or run as root" }
        openError = s
      } else {
        defer { _ = ckvm_close(fd) }
        let v = ckvm_get_api_version(fd)
        if v < 0 {
          openError = "KVM_GET_API_VERSION on \(path) failed: \(errnoDescription(-v))"
        } else {
          api = v
          if v != 12 {
            openError = "\(path) reports KVM API version \(v); only version 12 is supported"
          }
        }
        if openError == nil {
          for (name, cap) in KVMHost.probedCapabilities {
            caps.append((name, max(ckvm_check_extension(fd, cap), 0)))
          }
          switch KVMHost.supportedCPUID(kvmFD: fd) {
          case .success(let e): cpuid = e
          case .failure(let e): cpuidError = e.description
          }
        }
      }
    }
    self.openError = openError
    apiVersion = api
    capabilities = caps
    supportedCPUID = cpuid
    supportedCPUIDError = cpuidError

    // Decide the kind: PVM first (its module is explicit), then the CPU flags.
    let flags = KVMHost.cpuFlags()
    if modules.contains("kvm_pvm") {
      kind = .pvm
      kindReason = "the kvm_pvm module is loaded"
    } else if openError != nil {
      kind = .none
      kindReason = "no usable \(path)"
    } else if let flags {
      if flags.contains("vmx") {
        kind = .vmx
        kindReason = "CPU flags include vmx"
      } else if flags.contains("svm") {
        kind = .svm
        kindReason = "CPU flags include svm"
      } else {
        kind = .pvm
        kindReason = "\(path) works but the CPU flags show neither vmx nor svm"
      }
    } else {
      kind = .unknown
      kindReason = "/proc/cpuinfo could not be read"
    }
  }

  static let probedCapabilities: [(String, Int)] = [
    ("IRQCHIP", Int(CKVM_CAP_IRQCHIP)), ("HLT", Int(CKVM_CAP_HLT)),
    ("USER_MEMORY", Int(CKVM_CAP_USER_MEMORY)), ("SET_TSS_ADDR", Int(CKVM_CAP_SET_TSS_ADDR)),
    ("SET_IDENTITY_MAP_ADDR", Int(CKVM_CAP_SET_IDENTITY_MAP_ADDR)),
    ("EXT_CPUID", Int(CKVM_CAP_EXT_CPUID)), ("IMMEDIATE_EXIT", Int(CKVM_CAP_IMMEDIATE_EXIT)),
    ("PIT2", Int(CKVM_CAP_PIT2)), ("NR_VCPUS", Int(CKVM_CAP_NR_VCPUS)),
    ("MAX_VCPUS", Int(CKVM_CAP_MAX_VCPUS)), ("NR_MEMSLOTS", Int(CKVM_CAP_NR_MEMSLOTS)),
    ("USER_NMI", Int(CKVM_CAP_USER_NMI)), ("SPLIT_IRQCHIP", Int(CKVM_CAP_SPLIT_IRQCHIP)),
    ("X86_USER_SPACE_MSR", Int(CKVM_CAP_X86_USER_SPACE_MSR)),
    ("X86_MSR_FILTER", Int(CKVM_CAP_X86_MSR_FILTER)),
  ]

  /// The flags of the first CPU in /proc/cpuinfo, or nil when unreadable.
  static func cpuFlags() -> Set<Substring>? {
    guard let text = readHostFile("/proc/cpuinfo") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("flags") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      return Set(line[line.index(after: colon)...].split(separator: " "))
    }
    return nil
  }

  /// KVM_GET_SUPPORTED_CPUID, growing the buffer while KVM answers E2BIG.
  static func supportedCPUID(kvmFD fd: Int32) -> Result<[CPUIDEntry], EngineError> {
    var capacity: UInt32 = 128
    while capacity <= 8192 {
      var raw = [ckvm_cpuid_entry](repeating: ckvm_cpuid_entry(), count: Int(capacity))
      var count: UInt32 = 0
      let r = raw.withUnsafeMutableBufferPointer {
        ckvm_get_supported_cpuid(fd, $0.baseAddress, capacity, &count)
      }
      if r == -E2BIG {
        capacity *= 2
        continue
      }
      if r < 0 { return .failure(kvmFailure("KVM_GET_SUPPORTED_CPUID", r)) }
      let n = min(Int(count), raw.count)
      return .success(
        raw[0..<n].map {
          CPUIDEntry(
            function: $0.function, index: $0.index,
            indexed: $0.flags & UInt32(CKVM_CPUID_FLAG_SIGNIFICANT_INDEX) != 0,
            result: CPUIDResult(eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx))
        })
    }
    return .failure(.failed("KVM_GET_SUPPORTED_CPUID wants more than 8192 entries"))
  }

  /// Multi-line description for `swiftvmm info`.
  public var report: String {
    var lines: [String] = []
    if let openError {
      lines.append("KVM: not usable: \(openError)")
    } else {
      lines.append("KVM: \(devicePath) opened, API version \(apiVersion.map(String.init) ?? "?")")
    }
    lines.append("  kind: \(kind.rawValue) (\(kindReason))")
    lines.append("  modules: \(modules.isEmpty ? "none" : modules.joined(separator: ", "))")
    let hw: String
    if hardwareVirtualization {
      hw = "yes: KVM is the default engine"
    } else if isUsable && kind == .pvm {
      hw = "no: KVM-PVM emulates guests (~8 µs per exit); a software engine stays the default"
    } else {
      hw = "no: a software engine is the default"
    }
    lines.append("  hardware virtualization: \(hw)")
    if !capabilities.isEmpty {
      let c = capabilities.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
      lines.append("  capabilities: \(c)")
    }
    if let supportedCPUIDError {
      lines.append("  supported CPUID: \(supportedCPUIDError)")
    } else if isUsable {
      let basic = supportedCPUID.first { $0.function == 0 }
      let ext = supportedCPUID.first { $0.function == 0x8000_0000 }
      var vendor = "?"
      if let b = basic?.result {
        var bytes: [UInt8] = []
        for w in [b.ebx, b.edx, b.ecx] {
          for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: w >> (8 * i))) }
        }
        vendor = String(decoding: bytes, as: UTF8.self)
      }
      lines.append(
        "  supported CPUID: \(supportedCPUID.count) entries, vendor \(vendor), max leaf "
          + "\(basic.map { hex($0.result.eax) } ?? "?"), max extended leaf "
          + "\(ext.map { hex($0.result.eax) } ?? "?")")
    }
    return lines.joined(separator: "\n")
  }
}
