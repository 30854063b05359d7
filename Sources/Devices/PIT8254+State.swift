extension PIT8254: CodableSnapshotPart {
  public struct State: Codable, Equatable {
    var channels: [PITChannel]
    var port61Bits: UInt8
    /// Absolute guest-clock tick: the clock continues from the snapshot, so it stays valid.
    var nextIRQTick: UInt64?
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "pit8254" }

  public func captureState() -> State {
    State(channels: channels, port61Bits: port61Bits, nextIRQTick: nextIRQTick)
  }

  public func applyState(_ s: State) throws {
    try require(s.channels.count == 3, "\(s.channels.count) channels")
    for c in s.channels {
      try require((1...0x10000).contains(c.count), "count \(c.count)")
      try require(c.mode < 8 && (1...3).contains(c.access), "mode or access")
    }
    channels = s.channels
    port61Bits = s.port61Bits
    nextIRQTick = s.nextIRQTick
  }
}
