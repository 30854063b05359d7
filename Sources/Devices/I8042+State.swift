extension I8042Device: CodableSnapshotPart {
  public struct State: Codable, Equatable {
    var output: [UInt8]
    var commandByte: UInt8
    var pendingCommand: UInt8?
    var lastWasCommand: Bool
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "i8042" }

  public func captureState() -> State {
    State(
      output: output, commandByte: commandByte, pendingCommand: pendingCommand,
      lastWasCommand: lastWasCommand)
  }

  public func applyState(_ s: State) throws {
    try require(s.output.count <= 1 << 16, "output queue of \(s.output.count) bytes")
    output = s.output
    commandByte = s.commandByte
    pendingCommand = s.pendingCommand
    lastWasCommand = s.lastWasCommand
  }
}
