import X86

/// A virtual CPU, whatever executes it (the interpreter or /dev/kvm).
///
/// The VMM calls `run()` in a loop; each call executes guest code until the
/// guest needs the outside world and returns that need as a `VMExit`.
/// Devices never see the engine; the engine never sees devices.
public protocol VirtualCPU: AnyObject {
  /// Short engine name ("kvm", "interpreter").
  var engineName: String { get }

  func getState() throws -> CPUState
  func setState(_ state: CPUState) throws

  /// Every register the engine has, for a snapshot (X86/VCPUSnapshot.swift); called
  /// between exits. `restoreVCPU` accepts a snapshot from any engine.
  func saveVCPU() throws -> VCPUSnapshot
  func restoreVCPU(_ snapshot: VCPUSnapshot) throws

  /// Runs guest code until the next exit.
  func run() throws -> VMExit

  /// Supplies the value for the last `.portIO(.in)` or MMIO read exit.
  func completeIO(value: UInt64)

  /// Writes the result register of the last `.hypercall` exit.
  func setHypercallResult(_ value: UInt64)

  /// Thread-safe: makes the current or next `run()` return `.interrupted` soon.
  func kick()

  /// Counters for `--stats` (instructions, exits by reason, TLB figures...).
  func statistics() -> [String: UInt64]

  /// The last CPU exception (fault, trap or abort, not INT n or an external
  /// interrupt) the engine saw the guest take, or nil if it has none to report.
  var lastException: ExceptionRecord? { get }

  /// The CPUID feature names (`CPUFeature.name`) this engine can really provide;
  /// CPUID policies are masked to and validated against it.
  static var implementedFeatures: Set<String> { get }

  /// The software-MMU interface, for engines that virtualize memory in software
  /// (nil: the engine pages in hardware). The VMM asks this, never the engine's type.
  var softwareMMU: SoftwareMMUHardware? { get }

  /// Whether `setDebugSettings` works on this engine.
  var supportsDebugStops: Bool { get }
  /// Replaces the debug stops (DebugStops.swift); `run()` then returns `.debug` at them.
  func setDebugSettings(_ settings: DebugSettings) throws
  /// The x87/SSE state as an FXSAVE image, for a debugger (nil: not available).
  var debugFXImage: [UInt8]? { get }
}

extension VirtualCPU {
  public var softwareMMU: SoftwareMMUHardware? { nil }
  public var supportsDebugStops: Bool { false }
  public var debugFXImage: [UInt8]? { nil }
  public func setDebugSettings(_ settings: DebugSettings) throws {
    guard settings.isEmpty else {
      throw EngineError.unsupported("the \(engineName) engine has no debug stops")
    }
  }
}

/// One exception a vCPU took: for the register dump when a VM stops badly.
public struct ExceptionRecord: Equatable, Sendable, CustomStringConvertible {
  public var vector: UInt8
  public var errorCode: UInt32?
  /// The instruction that caused it.
  public var rip: UInt64

  public init(vector: UInt8, errorCode: UInt32?, rip: UInt64) {
    self.vector = vector
    self.errorCode = errorCode
    self.rip = rip
  }

  public var description: String {
    let names = [
      "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "9", "#TS", "#NP", "#SS",
      "#GP", "#PF", "15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
    ]
    var s = Int(vector) < names.count ? names[Int(vector)] : "vector \(vector)"
    if let c = errorCode { s += " error 0x" + String(c, radix: 16) }
    return s + " at RIP 0x" + String(rip, radix: 16)
  }
}

/// Errors an engine raises before or outside guest execution.
public enum EngineError: Error, CustomStringConvertible, Equatable {
  case unavailable(String)
  case failed(String)
  case unsupported(String)

  public var description: String {
    switch self {
    case .unavailable(let s): return "engine unavailable: \(s)"
    case .failed(let s): return "engine failure: \(s)"
    case .unsupported(let s): return "unsupported: \(s)"
    }
  }
}

/// What an interrupt controller model offers a CPU that has no in-kernel one
/// (the interpreter): "is there an interrupt for you, and which vector".
/// Implemented by the VMM on top of the PIC/APIC device models.
public protocol InterruptInput: AnyObject {
  /// True when an external interrupt is pending (INTR line high).
  var hasPendingInterrupt: Bool { get }
  /// Acknowledges the highest-priority pending interrupt (INTA cycle) and returns its vector.
  func acknowledgeInterrupt() -> UInt8?
  /// True when a non-maskable interrupt is pending (not masked by IF).
  var hasPendingNMI: Bool { get }
  /// The CPU takes the pending NMI (delivered through vector 2).
  func acknowledgeNMI()
}

extension InterruptInput {
  /// Controllers without an NMI source never have one pending.
  public var hasPendingNMI: Bool { false }
  public func acknowledgeNMI() {}
}
