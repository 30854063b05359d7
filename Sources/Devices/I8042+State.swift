extension I8042Device: CodableSnapshotPart {
  public struct State: Codable, Equatable {
    var output: [UInt8]
    var commandByte: UInt8
    var pendingCommand: UInt8?
    var lastWasCommand: Bool
    var pendingKeyboardCommand: UInt8?
    var scanning: Bool
  }
  public static let stateVersion = 2
  public var snapshotKind: String { "i8042" }

  public func captureState() -> State {
    State(
      output: output, commandByte: commandByte, pendingCommand: pendingCommand,
      lastWasCommand: lastWasCommand, pendingKeyboardCommand: pendingKeyboardCommand,
      scanning: scanning)
  }

  public func applyState(_ s: State) throws {
    try require(
      s.output.count <= I8042Device.outputLimit, "output queue of \(s.output.count) bytes")
    output = s.output
    commandByte = s.commandByte
    pendingCommand = s.pendingCommand
    lastWasCommand = s.lastWasCommand
    pendingKeyboardCommand = s.pendingKeyboardCommand
    scanning = s.scanning
  }
}
