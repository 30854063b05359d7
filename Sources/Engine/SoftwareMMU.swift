import X86

// The contract between an engine that virtualizes memory in software (the
// interpreter plays the CPU) and the VMM's MMU policy (Sources/VMM/MMU). The
// engine publishes `SoftwareMMUHardware` through `VirtualCPU.softwareMMU`; the
// VMM installs its `SoftwareMMUHooks`, which the engine calls synchronously for
// MMU events. Engines with hardware paging (KVM) offer neither, so the VMM's run
// loop never sees an MMU event.

/// How linear addresses become host pointers on a TLB miss. Only the walk and
/// its fault handling differ between modes; the TLB fast path is shared.
public enum MMUMode: Sendable {
  /// The walker reads guest page tables at guest-physical addresses (a plain emulator).
  case direct
  /// 2D walk: every guest table reference and the final GPA go through the VMM's nested table.
  case nested
  /// The walker reads only the VMM's shadow table (GVA -> HPA); misses exit to the VMM.
  case shadow
  /// Direct walk over VMM-validated tables; pinned frames are read-only; hypercalls.
  case paravirt
}

/// Per-guest-frame flags the VMM sets and the CPU reads on TLB write fills.
public enum GuestFrameFlag {
  /// Stores to this guest frame must not be cached as writable: in shadow mode
  /// they exit to the VMM (`.writeProtected`), in paravirt mode they raise #PF.
  public static let writeProtected: UInt8 = 1
  /// Paravirt: pinned table level (1...4) in bits 1-3 (0 = not pinned).
  public static let pinnedShift: UInt8 = 1
  public static let pinnedMask: UInt8 = 7 << 1
}

/// Nested-table entry format (EPT-like): bits 0-2 R/W/X, bits 12-51 HPA.
public enum NestedEntry {
  public static let read: UInt64 = 1
  public static let write: UInt64 = 2
  public static let exec: UInt64 = 4
  public static let rwx: UInt64 = 7
  /// W without R is an EPT misconfiguration; like KVM we use it to mark MMIO GPAs.
  public static let mmio: UInt64 = 2
  public static let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
}

/// Shadow-table entries use the x86 PTE format; these software bits are ours.
public enum ShadowEntry {
  /// Leaf maps MMIO: the address field holds the GPA, not an HPA (like KVM's MMIO sptes).
  public static let mmio: UInt64 = 1 << 11
}

/// A guest store to a write-protected page-table frame, held back by the CPU
/// and performed by the VMM (shadow mode).
public struct InterceptedStore: Equatable, Sendable {
  public var gva: UInt64
  public var gpa: UInt64
  public var size: Int
  public var value: UInt64
  public init(gva: UInt64, gpa: UInt64, size: Int, value: UInt64) {
    self.gva = gva
    self.gpa = gpa
    self.size = size
    self.value = value
  }
}

/// The guest's paging registers as the VMM's software walker needs them.
public struct PagingRegisters: Equatable, Sendable {
  public var cr0: UInt64
  public var cr3: UInt64
  public var cr4: UInt64
  public var efer: UInt64
  public init(cr0: UInt64, cr3: UInt64, cr4: UInt64, efer: UInt64) {
    self.cr0 = cr0
    self.cr3 = cr3
    self.cr4 = cr4
    self.efer = efer
  }
}

extension MMUMode {
  public var name: String {
    switch self {
    case .direct: return "direct"
    case .nested: return "nested"
    case .shadow: return "shadow"
    case .paravirt: return "paravirt"
    }
  }
  public init?(name: String) {
    switch name {
    case "direct": self = .direct
    case "nested": self = .nested
    case "shadow": self = .shadow
    case "paravirt": self = .paravirt
    default: return nil
    }
  }
}

/// What the VMM's MMU may program in a CPU that virtualizes memory in software
/// (what a VMCS/VMCB would hold): roots, the frame-flag map, flushes, injections.
public protocol SoftwareMMUHardware: AnyObject {
  var mmuMode: MMUMode { get }
  /// The VMM's handler for MMU events; held weakly by the CPU.
  var mmuHooks: SoftwareMMUHooks? { get set }
  /// HPA of the nested PML4 (the EPTP / nCR3).
  func setNestedRoot(_ hpa: UInt64)
  func setNestedWalkCache(_ on: Bool)
  /// HPA of the shadow PML4 for the current guest context.
  func setShadowRoot(_ hpa: UInt64)
  var shadowRoot: UInt64 { get }
  /// Per-guest-frame `GuestFrameFlag`s, owned by the VMM.
  func attachFrameFlags(_ p: UnsafeMutablePointer<UInt8>, count: UInt64)
  /// Host frame -> guest frame + 1 (shadow: lets a held-back store name its GPA).
  func attachM2P(_ p: UnsafeMutablePointer<UInt32>, count: UInt64)
  var pagingRegisters: PagingRegisters { get }
  var currentPrivilegeLevel: Int { get }
  var isIn64BitMode: Bool { get }
  /// Sets a general register (0 = RAX ... 15 = R15); for hypercall results.
  func setGeneralRegister(_ i: Int, _ v: UInt64)
  func flushTranslations(includingGlobal: Bool)
  func flushTranslation(linear: UInt64)
  /// Same effect as MOV to CR3 (paravirt HC_NEW_BASEPTR).
  func loadCR3(_ value: UInt64)
  func setParavirtStrict(_ on: Bool)
  /// Delivered at the start of the next `run()`, with CR2 = address.
  func injectPageFault(address: UInt64, errorCode: UInt32)
  /// Stores held back because they hit write-protected frames (shadow mode).
  func takeInterceptedStores() -> [InterceptedStore]
  /// The CPUID leaf this CPU reports (the MMU depends on feature bits such as 1 GiB pages).
  func cpuidLeaf(_ leaf: UInt32) -> CPUIDResult
}

/// The VMM's answers to MMU events, called by the engine in the middle of `run()`.
/// A returned message stops the VM (like a machine check): the engine's `run()`
/// returns `.shutdown(reason:)` with it.
public protocol SoftwareMMUHooks: AnyObject {
  /// Nested paging: no GPA -> HPA mapping (or not enough rights); the instruction restarts.
  func nestedPageFault(gpa: UInt64, write: Bool, fetch: Bool) -> String?
  /// Shadow paging: the shadow table has no usable entry for `gva`; the instruction restarts.
  func shadowMiss(gva: UInt64, write: Bool, user: Bool, fetch: Bool) -> String?
  /// Shadow paging: stores to write-protected guest page-table frames were held back
  /// (`takeInterceptedStores`); the first one is described here.
  func protectedWrite(gva: UInt64, gpa: UInt64, size: Int, value: UInt64) -> String?
  /// CR3 load or paging-mode change (shadow and paravirt).
  func cr3Loaded(_ cr3: UInt64) -> String?
  /// INVLPG (shadow).
  func invalidatedPage(_ gva: UInt64)
}
