/// Why the machine should stop, as requested by a device or the host.
public enum StopRequest: Equatable, Sendable {
  /// isa-debug-exit: the process exits with `status`.
  case debugExit(status: Int32)
  /// The guest asked for a reset (i8042 pulse, port 0xCF9...). SwiftVMM stops instead of rebooting.
  case reset
  /// The guest powered off (ACPI S5).
  case powerOff
}

/// How devices tell the VMM to stop the machine. Devices hold this, never the VMM.
public final class MachineControl {
  public private(set) var stopRequest: StopRequest?
  public init() {}
  /// The first request wins; later ones are ignored.
  public func requestStop(_ r: StopRequest) {
    if stopRequest == nil { stopRequest = r }
  }
}
