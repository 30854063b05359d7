extension CMOSRTC: CodableSnapshotPart {
  public struct State: Codable, Equatable {
    var cmos: [UInt8]
    var index: Int
    /// Time of day `baseSeconds` at guest time `baseNanoseconds` (the guest clock continues).
    var baseSeconds: Int64
    var baseNanoseconds: UInt64
    var lastSecond: Int64
    var lastPeriodicIndex: UInt64
    var irqLevel: Bool
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "cmos-rtc" }

  public func captureState() -> State {
    State(
      cmos: cmos, index: index, baseSeconds: baseSeconds, baseNanoseconds: baseNanoseconds,
      lastSecond: lastSecond, lastPeriodicIndex: lastPeriodicIndex, irqLevel: irq?.level ?? false)
  }

  public func applyState(_ s: State) throws {
    try require(s.cmos.count == 128 && (0..<128).contains(s.index), "CMOS size or index")
    cmos = s.cmos
    index = s.index
    baseSeconds = s.baseSeconds
    baseNanoseconds = s.baseNanoseconds
    lastSecond = s.lastSecond
    lastPeriodicIndex = s.lastPeriodicIndex
    irq?.level = s.irqLevel
  }
}
