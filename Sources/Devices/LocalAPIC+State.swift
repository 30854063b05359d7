extension VectorBitmap {
  var wordArray: [UInt64] { [words.0, words.1, words.2, words.3] }
  init(wordArray w: [UInt64]) {
    self.init()
    for (i, v) in w.prefix(4).enumerated() { setWord(i, v) }
  }
}

extension LocalAPIC: CodableSnapshotPart {
  /// Timer times are guest-clock nanoseconds (or TSC ticks for the deadline);
  /// the clock continues from the snapshot, so they stay valid.
  public struct State: Codable, Equatable {
    var apicBase: UInt64
    var id, tpr, ldr, dfr, svr, esr, esrPending, icrLow, icrHigh: UInt32
    var irr, isr, tmr: [UInt64]
    var lvt: [UInt32]
    var divideConfig, initialCount: UInt32
    var timerStart: UInt64?
    var tscDeadline: UInt64
    var timerDeadline: UInt64?
    var nmiPending: Bool
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "local-apic" }

  public func captureState() -> State {
    State(
      apicBase: apicBase, id: id, tpr: tpr, ldr: ldr, dfr: dfr, svr: svr, esr: esr,
      esrPending: esrPending, icrLow: icrLow, icrHigh: icrHigh, irr: irr.wordArray,
      isr: isr.wordArray, tmr: tmr.wordArray, lvt: lvt, divideConfig: divideConfig,
      initialCount: initialCount, timerStart: timerStart, tscDeadline: tscDeadline,
      timerDeadline: timerDeadline, nmiPending: nmiPending)
  }

  public func applyState(_ s: State) throws {
    try require(s.irr.count == 4 && s.isr.count == 4 && s.tmr.count == 4, "vector bitmaps")
    try require(s.lvt.count == lvt.count, "\(s.lvt.count) LVT entries")
    apicBase = s.apicBase
    id = s.id
    tpr = s.tpr
    ldr = s.ldr
    dfr = s.dfr
    svr = s.svr
    esr = s.esr
    esrPending = s.esrPending
    icrLow = s.icrLow
    icrHigh = s.icrHigh
    irr = VectorBitmap(wordArray: s.irr)
    isr = VectorBitmap(wordArray: s.isr)
    tmr = VectorBitmap(wordArray: s.tmr)
    lvt = s.lvt
    divideConfig = s.divideConfig
    initialCount = s.initialCount
    timerStart = s.timerStart
    tscDeadline = s.tscDeadline
    timerDeadline = s.timerDeadline
    nmiPending = s.nmiPending
    bus?.apicBaseChanged()
  }
}

extension APICBus: CodableSnapshotPart {
  /// Every local APIC (one per vCPU) and the bus's own delivery state.
  public struct State: Codable, Equatable {
    var apics: [LocalAPIC.State]
    var lowestPriorityNext: Int
    var unhandledIPIs: UInt64
    var sentIPIs: UInt64
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "local-apics" }

  public func captureState() -> State {
    State(
      apics: apics.map { $0.captureState() }, lowestPriorityNext: lowestPriorityNext,
      unhandledIPIs: unhandledIPIs, sentIPIs: sentIPIs)
  }

  public func applyState(_ s: State) throws {
    try require(s.apics.count == apics.count, "\(s.apics.count) APICs for \(apics.count) vCPUs")
    try require((0..<max(1, apics.count)).contains(s.lowestPriorityNext), "lowest-priority index")
    for (a, st) in zip(apics, s.apics) { try a.applyState(st) }
    lowestPriorityNext = s.lowestPriorityNext
    unhandledIPIs = s.unhandledIPIs
    sentIPIs = s.sentIPIs
  }
}
