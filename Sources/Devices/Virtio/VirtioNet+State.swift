import Foundation

/// What a snapshot keeps of virtio-net: the queues (in the transport's part), the
/// frames the back-end had handed over that wait for receive buffers, and the
/// counters. What is in flight inside the host back-end (slirp's sockets and NAT
/// table, a TAP device's queue) is not the VM's and cannot be saved: the restored
/// device starts a fresh back-end, like a cable pulled and plugged back in. The
/// guest keeps its address (slirp hands out the same lease); its TCP connections
/// through slirp are lost and time out or are reset.
extension VirtioNet {
  struct State: Codable {
    var backlog: [Data]
    var framesTransmitted, bytesTransmitted, framesReceived, bytesReceived: UInt64
    var malformedTransmits, receiveDrops: UInt64
  }

  public func saveDeviceState() -> [UInt8] {
    let c = counters
    let s = State(
      backlog: backlog.map { Data($0) }, framesTransmitted: c.framesTransmitted,
      bytesTransmitted: c.bytesTransmitted, framesReceived: c.framesReceived,
      bytesReceived: c.bytesReceived, malformedTransmits: c.malformedTransmits,
      receiveDrops: c.receiveDrops)
    return Array((try? JSONEncoder().encode(s)) ?? Data())
  }

  public func restoreDeviceState(_ record: [UInt8]) -> Bool {
    guard let s = try? JSONDecoder().decode(State.self, from: Data(record)),
      s.backlog.count <= Self.maxBacklogFrames,
      s.backlog.allSatisfy({ $0.count <= Self.maxFrameSize })
    else { return false }
    // Delivered when the guest next posts receive buffers (it had none free at the save).
    backlog = s.backlog.map { Array($0) }
    counters = Counters(
      framesTransmitted: s.framesTransmitted, bytesTransmitted: s.bytesTransmitted,
      framesReceived: s.framesReceived, bytesReceived: s.bytesReceived,
      malformedTransmits: s.malformedTransmits, receiveDrops: s.receiveDrops)
    return true
  }
}
