import Devices

/// Instruction-count time for `--deterministic`: guest nanoseconds are
/// retired instructions × a fixed rate, plus the time skipped while the vCPU
/// halted. Two runs of the same guest then see the same times at the same
/// instructions, so they execute the same instructions.
final class InstructionClock: GuestClock {
  /// Nominal guest speed: 1 instruction per nanosecond (1 GIPS).
  static let nanosecondsPerInstruction: UInt64 = 1

  /// The vCPU's retired-instruction counter; set once the engine exists.
  var instructions: () -> UInt64 = { 0 }
  var skipped: UInt64 = 0

  var nanoseconds: UInt64 {
    instructions() &* InstructionClock.nanosecondsPerInstruction &+ skipped
  }

  /// A halted vCPU retires nothing: jump guest time to the next deadline.
  func skip(to ns: UInt64) {
    let now = nanoseconds
    if ns > now { skipped &+= ns - now }
  }

  /// How many more instructions (on any vCPU) until guest time reaches `ns`.
  func instructionsUntil(_ ns: UInt64) -> UInt64 {
    let now = nanoseconds
    guard ns > now else { return 0 }
    return (ns - now + InstructionClock.nanosecondsPerInstruction - 1)
      / InstructionClock.nanosecondsPerInstruction
  }
}
