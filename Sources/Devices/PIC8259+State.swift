extension PIC8259Pair: CodableSnapshotPart {
  public struct State: Codable, Equatable {
    var master: PIC8259Chip
    var slave: PIC8259Chip
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "pic8259" }

  public func captureState() -> State { State(master: master, slave: slave) }

  public func applyState(_ s: State) throws {
    try require(s.master.isMaster && !s.slave.isMaster, "master and slave swapped")
    try require(
      s.master.elcrMask == master.elcrMask && s.slave.elcrMask == slave.elcrMask, "ELCR mask")
    try require(s.master.priorityBase < 8 && s.slave.priorityBase < 8, "priority base")
    master = s.master
    slave = s.slave
  }
}
