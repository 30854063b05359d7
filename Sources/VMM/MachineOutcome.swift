/// How a VM run ended, and the process exit status it maps to.
///
/// Status convention: 0 clean poweroff/reset; odd values come from the guest's
/// isa-debug-exit ((v << 1) | 1); 2 the guest failed (triple fault, halted
/// forever, engine error); 4 a watchdog fired; 130 interrupted by the user.
public enum MachineOutcome: Equatable, CustomStringConvertible {
  case debugExit(status: Int32)
  case reset
  case powerOff
  case guestFailure(String)
  case watchdog(String)
  case interrupted

  public var exitStatus: Int32 {
    switch self {
    case .debugExit(let s): return s & 0xFF
    case .reset, .powerOff: return 0
    case .guestFailure: return 2
    case .watchdog: return 4
    case .interrupted: return 130
    }
  }

  /// The one-line message for the user, or nil when the end was an ordinary one.
  public var message: String? {
    switch self {
    case .debugExit, .powerOff: return nil
    case .reset: return "guest requested a reset; stopping the VM"
    case .guestFailure(let s): return "guest failed: \(s)"
    case .watchdog(let s): return "watchdog: \(s)"
    case .interrupted: return "interrupted by the user"
    }
  }

  public var description: String {
    message ?? "exit status \(exitStatus)"
  }
}
