/// How a VM run ended, and the process exit status it maps to.
///
/// Status convention: 0 clean poweroff, reset with `--no-reboot`, or the user
/// quitting from the console (escape key, then x); odd values come from the
/// guest's isa-debug-exit ((v << 1) | 1); 2 the guest failed (triple fault,
/// halted forever, engine error); 4 a watchdog fired; 128+N stopped by signal
/// N (129 SIGHUP, 130 SIGINT, 131 SIGQUIT, 143 SIGTERM), as a shell reports it;
/// 6 stopped at `--snapshot-at` (the snapshot was saved).
public enum MachineOutcome: Equatable, CustomStringConvertible {
  case debugExit(status: Int32)
  case reset
  case powerOff
  case guestFailure(String)
  case watchdog(String)
  /// The host sent the VMM this signal; the VM stopped cleanly.
  case signal(Int32)
  /// The user quit from the console's escape key.
  case userQuit
  /// `Machine.stopAtInstruction` was reached (`--snapshot-at`): the caller saves the machine.
  case instructionStop(UInt64)

  public var exitStatus: Int32 {
    switch self {
    case .debugExit(let s): return s & 0xFF
    case .reset, .powerOff, .userQuit: return 0
    case .guestFailure: return 2
    case .watchdog: return 4
    case .signal(let n): return 128 + (n & 0x7F)
    case .instructionStop: return 6
    }
  }

  /// The one-line message for the user, or nil when the end was an ordinary one.
  public var message: String? {
    switch self {
    case .debugExit, .powerOff: return nil
    case .reset: return "guest requested a reset; stopping the VM (--no-reboot)"
    case .guestFailure(let s): return "guest failed: \(s)"
    case .watchdog(let s): return "watchdog: \(s)"
    case .signal(let n): return "stopped by \(MachineOutcome.signalName(n))"
    case .userQuit: return "quit from the console"
    case .instructionStop(let n): return "stopped after \(n) instructions (--snapshot-at)"
    }
  }

  /// Whether the user needs the vCPU's registers to see where it stopped.
  public var printsRegisters: Bool {
    switch self {
    case .guestFailure, .watchdog: return true
    default: return false
    }
  }

  static func signalName(_ n: Int32) -> String {
    let names: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 15: "SIGTERM"]
    return names[n] ?? "signal \(n)"
  }

  public var description: String {
    message ?? "exit status \(exitStatus)"
  }
}
