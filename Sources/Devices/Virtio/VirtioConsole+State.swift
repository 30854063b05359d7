import Foundation

extension VirtioConsole {
  struct State: Codable {
    /// Host input the guest had not taken yet (at most `maxBacklog` bytes).
    var backlog: Data
    var bytesTransmitted, transmitChains: UInt64
  }

  public func saveDeviceState() -> [UInt8] {
    let s = State(
      backlog: Data(backlog), bytesTransmitted: bytesTransmitted, transmitChains: transmitChains)
    return Array((try? JSONEncoder().encode(s)) ?? Data())
  }

  public func restoreDeviceState(_ record: [UInt8]) -> Bool {
    guard let s = try? JSONDecoder().decode(State.self, from: Data(record)),
      s.backlog.count <= Self.maxBacklog
    else { return false }
    // Delivered when the guest next posts or notifies: it had no free buffer at the save.
    backlog = Array(s.backlog)
    bytesTransmitted = s.bytesTransmitted
    transmitChains = s.transmitChains
    return true
  }
}
