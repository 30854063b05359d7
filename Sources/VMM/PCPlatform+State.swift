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
    /// Per vCPU: the kvm-clock MSR and the pvclock version last published.
    var kvmSystemTimeMSRs: [UInt64]
    var kvmClockVersions: [UInt32]
  }
  static let stateVersion = 1
  var snapshotKind: String { "pc-platform" }

  func captureState() -> State {
    State(
      nanoseconds: clock.nanoseconds, skippedNanoseconds: (clock as? InstructionClock)?.skipped,
      tscOffset: tsc.offset, kvmSystemTimeMSRs: kvmClocks.map(\.systemTimeMSR),
      kvmClockVersions: kvmClocks.map(\.version))
  }

  func applyState(_ s: State) throws {
    try require(
      s.kvmSystemTimeMSRs.count == kvmClocks.count && s.kvmClockVersions.count == kvmClocks.count,
      "kvm-clock state for \(s.kvmSystemTimeMSRs.count) vCPUs, the machine has \(kvmClocks.count)")
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
    for (i, k) in kvmClocks.enumerated() {
      k.systemTimeMSR = s.kvmSystemTimeMSRs[i]
      k.version = s.kvmClockVersions[i]
    }
    updateDeadline()
  }
}

extension VCPUScheduler: CodableSnapshotPart {
  /// Which vCPUs run, halt or wait for a start-up IPI, and whose turn it is.
  struct State: Codable, Equatable {
    /// "running", "halted", "halted-if", "wait-sipi" per vCPU.
    var states: [String]
    var current: Int
    var quantumEnd: UInt64?
    var resumeQuantum: Bool
  }
  static let stateVersion = 1
  var snapshotKind: String { "vcpu-scheduler" }

  func captureState() -> State {
    State(
      states: states.map {
        switch $0 {
        case .running: return "running"
        case .halted(let ifSet): return ifSet ? "halted-if" : "halted"
        case .waitingForSIPI: return "wait-sipi"
        }
      }, current: current, quantumEnd: quantumEnd, resumeQuantum: resumeQuantum)
  }

  func applyState(_ s: State) throws {
    try require(s.states.count == cpus.count, "\(s.states.count) vCPUs for \(cpus.count)")
    try require((0..<cpus.count).contains(s.current), "current vCPU \(s.current)")
    var new: [RunState] = []
    for t in s.states {
      switch t {
      case "running": new.append(.running)
      case "halted": new.append(.halted(interruptsEnabled: false))
      case "halted-if": new.append(.halted(interruptsEnabled: true))
      case "wait-sipi": new.append(.waitingForSIPI)
      default: throw SnapshotStateError.invalid(part: snapshotKind, reason: "vCPU state \(t)")
      }
    }
    states = new
    current = s.current
    quantumEnd = s.quantumEnd
    resumeQuantum = s.resumeQuantum
    platform?.apicBus.current = current
  }
}
