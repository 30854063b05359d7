extension IOAPIC: CodableSnapshotPart {
  public struct State: Codable, Equatable {
    var select: UInt8
    var id: UInt32
    var redirection: [UInt64]
    var lineLevels: UInt32
    var pendingEdges: UInt32
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "ioapic" }

  public func captureState() -> State {
    State(
      select: select, id: id, redirection: redirection, lineLevels: lineLevels,
      pendingEdges: pendingEdges)
  }

  public func applyState(_ s: State) throws {
    try require(s.redirection.count == IOAPIC.pinCount, "\(s.redirection.count) pins")
    select = s.select
    id = s.id
    redirection = s.redirection
    lineLevels = s.lineLevels
    pendingEdges = s.pendingEdges
  }
}
