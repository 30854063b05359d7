import Devices

extension PCPlatform: CodableSnapshotPart {
  /// Guest time and what hangs off it besides the devices: the TSC offset and
  /// kvm-clock. The devices' own timers are in their parts.
  struct State: Codable, Equatable {
    /// Guest nanoseconds at the snapshot.
    var nanoseconds: UInt64
    /// Instruction-count time: nanoseconds skipped while halted (the rest is the
    /// vCPU's retired-instruction count, which the CPU state carries).
    var skippedNanoseconds: UInt64?
    var tscOffset: UInt64
    var kvmSystemTimeMSR: UInt64
    var kvmClockVersion: UInt32
  }
  static let stateVersion = 1
  var snapshotKind: String { "pc-platform" }

  func captureState() -> State {
    State(
      nanoseconds: clock.nanoseconds, skippedNanoseconds: (clock as? InstructionClock)?.skipped,
      tscOffset: tsc.offset, kvmSystemTimeMSR: kvmClock.systemTimeMSR,
      kvmClockVersion: kvmClock.version)
  }

  func applyState(_ s: State) throws {
    if let c = clock as? InstructionClock {
      // Deterministic time must come back deterministic, or runs would diverge.
      guard let skipped = s.skippedNanoseconds else {
        throw SnapshotStateError.invalid(
          part: snapshotKind, reason: "saved with host time, restored with instruction-count time")
      }
      c.skipped = skipped
    } else if let c = clock as? HostMonotonicClock {
      c.resume(at: s.nanoseconds)
    }
    tsc.restore(offset: s.tscOffset)
    kvmClock.systemTimeMSR = s.kvmSystemTimeMSR
    kvmClock.version = s.kvmClockVersion
    updateDeadline()
  }
}
