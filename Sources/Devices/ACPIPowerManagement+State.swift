extension ACPIPowerManagement: CodableSnapshotPart {
  /// The PM timer is derived from the guest clock, which the snapshot carries.
  public struct State: Codable, Equatable {
    var status: UInt16
    var enable: UInt16
    var pmControl: UInt16
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "acpi-pm" }

  public func captureState() -> State {
    State(status: status, enable: enable, pmControl: pmControl)
  }

  public func applyState(_ s: State) throws {
    status = s.status
    enable = s.enable
    pmControl = s.pmControl
  }
}
