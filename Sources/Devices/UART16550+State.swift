extension UART16550: CodableSnapshotPart {
  public struct State: Codable, Equatable {
    var ier, lcr, mcr, scr, dll, dlm, msrDeltas: UInt8
    var fifoEnabled, overrun, thrEmptyPending: Bool
    var triggerLevel: Int
    var rxFIFO: [UInt8]
    /// Host input not yet in the FIFO travels with the machine.
    var hostBacklog: [UInt8]
    var bytesTransmitted: UInt64
    var irqLevel: Bool
    /// Only in snapshots from before THR emptied at once (a transmit time was
    /// pending): the byte has left by now. Never written.
    var transmitDoneAt: UInt64?
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "uart16550" }

  public func captureState() -> State {
    State(
      ier: ier, lcr: lcr, mcr: mcr, scr: scr, dll: dll, dlm: dlm, msrDeltas: msrDeltas,
      fifoEnabled: fifoEnabled, overrun: overrun, thrEmptyPending: thrEmptyPending,
      triggerLevel: triggerLevel, rxFIFO: rxFIFO, hostBacklog: Array(hostBacklog[backlogHead...]),
      bytesTransmitted: bytesTransmitted, irqLevel: irq?.level ?? false, transmitDoneAt: nil)
  }

  public func applyState(_ s: State) throws {
    try require(s.rxFIFO.count <= UART16550.fifoSize, "receive FIFO over 16 bytes")
    try require(s.hostBacklog.count <= UART16550.hostBacklogLimit, "host backlog over its limit")
    try require([1, 4, 8, 14].contains(s.triggerLevel), "trigger level \(s.triggerLevel)")
    ier = s.ier
    lcr = s.lcr
    mcr = s.mcr
    scr = s.scr
    dll = s.dll
    dlm = s.dlm
    msrDeltas = s.msrDeltas
    fifoEnabled = s.fifoEnabled
    overrun = s.overrun
    thrEmptyPending = s.thrEmptyPending || s.transmitDoneAt != nil
    triggerLevel = s.triggerLevel
    rxFIFO = s.rxFIFO
    hostBacklog = s.hostBacklog
    backlogHead = 0
    bytesTransmitted = s.bytesTransmitted
    // The controller's own record of the line comes back with its state.
    irq?.level = s.irqLevel
  }
}
