import Logging

/// INIT and start-up IPIs: what the VMM does with them (reset a vCPU, start it)
/// is not a device's business, so the bus hands them over.
public enum StartupSignal: Equatable, Sendable {
  case initialize
  /// SIPI: the AP starts in real mode at `vector << 12`.
  case startup(vector: UInt8)
}

/// The wires between local APICs (one per vCPU) and from the IOAPIC and MSIs
/// to them: routes IPIs by shorthand and physical/logical destination, picks
/// one target for lowest-priority delivery, and shows the current vCPU's APIC
/// at the xAPIC MMIO page (every CPU sees its own APIC at the same address).
public final class APICBus: MMIODevice {
  public let apics: [LocalAPIC]
  /// Index of the vCPU whose MMIO accesses are being handled (the scheduler sets it).
  public var current = 0
  /// INIT/SIPI for the vCPU at an index; nil: counted and logged once, as IPIs
  /// nobody can act on.
  public var onStartup: ((Int, StartupSignal) -> Void)?
  /// IPIs nothing acted on (SMI, reserved modes, INIT/SIPI without `onStartup`).
  public internal(set) var unhandledIPIs: UInt64 = 0
  public internal(set) var sentIPIs: UInt64 = 0
  private var loggedIPIModes: UInt8 = 0
  private let logger = Logger(label: "swiftvmm.lapic")
  /// Lowest-priority ties go round-robin from here (deterministic, spreads load).
  var lowestPriorityNext = 0
  /// Where `register` mapped the bus, and the extra windows at bases APICs moved to.
  weak var mmio: MMIOBus?
  var mappedBase = LocalAPIC.defaultBase
  var relocatedWindows: [UInt64: RelocatedAPICWindow] = [:]
  var loggedRelocationConflict = false

  public init(apics: [LocalAPIC]) {
    self.apics = apics
    for (i, a) in apics.enumerated() {
      a.bus = self
      a.busIndex = i
    }
  }

  public func register(on bus: MMIOBus, base: UInt64 = LocalAPIC.defaultBase) throws {
    try bus.register(self, base: base, size: LocalAPIC.size, name: "local APIC")
    mmio = bus
    mappedBase = base
  }

  public func mmioRead(offset: UInt64, size: Int) -> UInt64 {
    read(window: mappedBase, offset: offset, size: size)
  }

  public func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
    write(window: mappedBase, offset: offset, size: size, value: value)
  }

  /// APICs an interrupt addressed to `destination` reaches.
  func targets(destination: UInt8, logical: Bool) -> [Int] {
    apics.indices.filter { apics[$0].matches(destination: destination, logical: logical) }
  }

  /// The target with the lowest processor priority; ties rotate.
  func lowestPriority(_ targets: [Int]) -> Int? {
    guard let first = targets.first else { return nil }
    var best = first
    var bestKey = UInt64.max
    for t in targets {
      // Rotation starts at `lowestPriorityNext` so equal priorities take turns.
      let order = UInt64((t - lowestPriorityNext + apics.count) % apics.count)
      let key = UInt64(apics[t].ppr & 0xF0) << 8 | order
      if key < bestKey {
        bestKey = key
        best = t
      }
    }
    lowestPriorityNext = (best + 1) % apics.count
    return best
  }

  /// An IPI written to `sender`'s ICR.
  func send(_ ipi: InterprocessorInterrupt, from sender: Int) {
    sentIPIs &+= 1
    var to: [Int]
    switch ipi.shorthand {
    case .selfOnly: to = [sender]
    case .allIncludingSelf: to = Array(apics.indices)
    case .allExcludingSelf: to = apics.indices.filter { $0 != sender }
    case .none: to = targets(destination: ipi.destination, logical: ipi.logicalDestination)
    }
    switch ipi.deliveryMode {
    case 0, 1:
      if ipi.vector < 16 {
        apics[sender].noteSendIllegalVector()
        return
      }
      if ipi.deliveryMode == 1, ipi.shorthand != .selfOnly, let t = lowestPriority(to) { to = [t] }
      for t in to { apics[t].deliver(vector: ipi.vector, levelTriggered: false) }
    case 4:
      for t in to { apics[t].latchNMI() }
    case 5:
      // Level de-assert (trigger level, level 0) only synchronizes arbitration IDs.
      if ipi.levelTriggered && !ipi.level { return }
      guard let onStartup else { return noteUnhandled(ipi) }
      for t in to {
        apics[t].initReset()
        onStartup(t, .initialize)
      }
    case 6:
      guard let onStartup else { return noteUnhandled(ipi) }
      for t in to { onStartup(t, .startup(vector: ipi.vector)) }
    default:
      noteUnhandled(ipi)
    }
  }

  /// A message from the IOAPIC or an MSI: fixed to every matching APIC,
  /// lowest priority to one of them, NMI latched in each.
  public func accept(_ m: IOAPICMessage) {
    let to = targets(destination: m.destination, logical: m.logicalDestination)
    switch m.deliveryMode {
    case 0: for t in to { apics[t].deliver(vector: m.vector, levelTriggered: m.levelTriggered) }
    case 1:
      if let t = lowestPriority(to) {
        apics[t].deliver(vector: m.vector, levelTriggered: m.levelTriggered)
      }
    case 4: for t in to { apics[t].latchNMI() }
    default: break  // SMI, INIT, ExtINT through the IOAPIC: not modelled
    }
  }

  /// Count it and say so once per delivery mode.
  private func noteUnhandled(_ ipi: InterprocessorInterrupt) {
    unhandledIPIs &+= 1
    let bit: UInt8 = 1 << (ipi.deliveryMode & 7)
    guard loggedIPIModes & bit == 0 else { return }
    loggedIPIModes |= bit
    let kinds = ["fixed", "lowest-priority", "SMI", "mode 3", "NMI", "INIT", "start-up", "mode 7"]
    logger.warning(
      "IPI (\(kinds[Int(ipi.deliveryMode & 7)]), vector 0x\(String(ipi.vector, radix: 16))) is not supported on this platform; further ones are counted only"
    )
  }
}
