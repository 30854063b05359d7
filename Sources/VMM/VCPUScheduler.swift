import Devices
import Engine
import Logging
import X86

/// Runs a machine's vCPUs in turn on the one vCPU thread, each for a fixed
/// quantum of retired instructions (round-robin, as QEMU's TCG did for years).
///
/// Why one thread: the decode caches, soft TLBs and translated blocks then need
/// no cross-thread invalidation, LOCK/XCHG need no host atomics (no two vCPUs
/// run at once), and with instruction-count time the interleaving is a function
/// of instruction counts only, so `--deterministic` stays deterministic.
/// Stale code is caught globally by construction: the decode cache and the
/// translator re-check guest bytes on every hit, whichever vCPU wrote them.
/// TLBs are per vCPU, as in hardware: a guest that changes a mapping another
/// vCPU uses must shoot it down with an IPI.
final class VCPUScheduler {
  enum RunState: Equatable {
    case running
    /// HLT; `interruptsEnabled` is IF at the halt (it cannot change while halted).
    case halted(interruptsEnabled: Bool)
    /// An AP before its start-up IPI (or after an INIT).
    case waitingForSIPI
  }

  /// Instructions a vCPU runs before the next one gets its turn.
  static let quantum: UInt64 = 20_000

  let cpus: [VirtualCPU]
  private let pauseAt: [(UInt64) -> Void]
  private let retired: [() -> UInt64]
  let platform: PCPlatform?
  var states: [RunState]
  /// The vCPU that ran last (whose exit is being handled).
  var current = 0
  /// Retired-instruction count at which the current vCPU's quantum ends (SMP).
  var quantumEnd: UInt64?
  /// Set when the run stopped inside a quantum: `next()` keeps the current vCPU
  /// and `pace` gives it only the rest of its quantum.
  var resumeQuantum = false
  private var resumingQuantum = false
  /// Retired count at which the current vCPU was armed to stop (nil: not armed).
  private var armedStop: UInt64?
  /// The lone vCPU was armed with no stop (host time): `pace` need not arm it again.
  private var armedUnbounded = false
  /// Times the scheduler moved from one vCPU to another.
  private(set) var switches: UInt64 = 0
  private(set) var startups: UInt64 = 0
  private let logger: Logger
  private var loggedBSPInit = false

  init(engine: EngineInstance, platform: PCPlatform?, logger: Logger) {
    cpus = engine.cpus
    pauseAt = engine.pauseAt
    retired = engine.retired
    self.platform = platform
    self.logger = logger
    states = [.running] + Array(repeating: .waitingForSIPI, count: engine.cpus.count - 1)
    platform?.apicBus.onStartup = { [unowned self] cpu, signal in self.receive(signal, cpu: cpu) }
  }

  /// The next vCPU to run, round-robin after the current one; halted vCPUs with
  /// an interrupt they can take become runnable. Nil: nothing can run now.
  func next() -> Int? {
    if resumeQuantum {
      // The run stopped mid-quantum (`--snapshot-at`): the same vCPU finishes its
      // turn, so the interleaving matches a run that never stopped.
      resumeQuantum = false
      if canRun(current) {
        resumingQuantum = true
        return current
      }
    }
    let n = cpus.count
    for k in 1...n {
      let i = (current + k) % n
      if canRun(i) {
        if i != current { switches &+= 1 }
        current = i
        platform?.apicBus.current = i
        return i
      }
    }
    return nil
  }

  private func canRun(_ i: Int) -> Bool {
    switch states[i] {
    case .running: return true
    case .waitingForSIPI: return false
    case .halted(let ifSet):
      guard let p = platform else { return false }
      let input = p.interrupts[i]
      guard input.hasPendingNMI || (ifSet && input.hasPendingInterrupt) else { return false }
      states[i] = .running
      return true
    }
  }

  /// Arms the current vCPU's stop: the end of its quantum (SMP), or the next
  /// timer deadline in instruction-count time, whichever comes first.
  /// `stopAt`: total retired instructions (all vCPUs) at which to stop (`--snapshot-at`).
  func pace(clock: InstructionClock?, deadline: UInt64?, stopAt: UInt64? = nil) {
    guard !pauseAt.isEmpty else { return }
    if cpus.count == 1 && clock == nil && stopAt == nil {
      // One vCPU on host time (every exit comes here): no quantum, no instruction
      // deadline, and the vCPU keeps an unbounded stop once armed.
      resumingQuantum = false
      armedStop = nil
      if !armedUnbounded {
        pauseAt[current](.max)
        armedUnbounded = true
      }
      return
    }
    armedUnbounded = false
    let now = retired[current]()
    var budget = cpus.count > 1 ? VCPUScheduler.quantum : UInt64.max
    if let end = quantumEnd, resumingQuantum { budget = end > now ? end - now : 0 }
    resumingQuantum = false
    if budget != .max { quantumEnd = now &+ budget }
    if let clock, let deadline { budget = min(budget, clock.instructionsUntil(deadline)) }
    if let clock, let stopAt {
      let done = clock.instructions()
      budget = min(budget, stopAt > done ? stopAt - done : 0)
    }
    armedStop = budget == .max ? nil : now &+ budget
    pauseAt[current](budget == .max ? .max : now &+ budget)
  }

  /// A host kick (not the armed stop) ended the current vCPU's run: under
  /// `--deterministic` it resumes the rest of its turn, so host timing never changes
  /// which vCPU runs when. A vCPU that reached its armed stop switches as usual.
  func resumeAfterHostKick() {
    guard !pauseAt.isEmpty, let stop = armedStop, retired[current]() < stop else { return }
    resumeQuantum = true
  }

  /// The current vCPU executed HLT.
  func halted(interruptsEnabled: Bool) {
    states[current] = .halted(interruptsEnabled: interruptsEnabled)
  }

  /// Whether some halted vCPU now has something to wake it.
  var anyWakeable: Bool {
    guard let p = platform else { return false }
    for (i, s) in states.enumerated() {
      guard case .halted(let ifSet) = s else { continue }
      if p.interrupts[i].hasPendingNMI || (ifSet && p.interrupts[i].hasPendingInterrupt) {
        return true
      }
    }
    return false
  }

  /// True when every vCPU that could run is halted with IF=0: only an NMI,
  /// which nothing here can send, would wake one.
  var allHaltedWithInterruptsDisabled: Bool {
    !states.contains {
      if case .halted(interruptsEnabled: false) = $0 { return false }
      return $0 != .waitingForSIPI
    } && states.contains(.halted(interruptsEnabled: false))
  }

  /// INIT puts an AP back in wait-for-SIPI; a SIPI starts a waiting AP in real
  /// mode at `vector << 12`, as the MP start-up protocol says.
  private func receive(_ signal: StartupSignal, cpu i: Int) {
    switch signal {
    case .initialize:
      // The boot CPU's INIT (a warm reset into the firmware) is not modelled.
      guard i != 0 else {
        if !loggedBSPInit {
          loggedBSPInit = true
          logger.warning("INIT IPI to the boot CPU is not supported; ignored (logged once)")
        }
        return
      }
      states[i] = .waitingForSIPI
    case .startup(let vector):
      guard states[i] == .waitingForSIPI else { return }  // a second SIPI is ignored
      var s = CPUState()
      s.special.cs = SegmentRegister.realMode(selector: UInt16(vector) << 8, code: true)
      s.special.apicBase = LocalAPIC.defaultBase | 1 << 11  // enabled, not the BSP
      s.general.rip = 0
      s.general.rflags = 2
      do {
        try cpus[i].setState(s)
      } catch {
        logger.error("vCPU \(i) start-up failed: \(error)")
        return
      }
      startups &+= 1
      states[i] = .running
    }
  }

  /// Counters for `--stats`: every vCPU's summed, the instructions per vCPU.
  func statistics() -> [String: UInt64] {
    guard cpus.count > 1 else { return cpus[0].statistics() }
    var sum: [String: UInt64] = [:]
    for (i, c) in cpus.enumerated() {
      let s = c.statistics()
      sum.merge(s) { $0 &+ $1 }
      if let n = s["instructions"] { sum["cpu\(i).instructions"] = n }
    }
    sum["vmm.vcpus"] = UInt64(cpus.count)
    sum["vmm.vcpu_switches"] = switches
    sum["vmm.vcpu_startups"] = startups
    return sum
  }
}
