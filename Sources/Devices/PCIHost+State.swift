extension PCIHost: CodableSnapshotPart {
  /// The config address latch and each function's configuration space. Only the
  /// bits the guest may write are restored: IDs, BAR sizes and capability layout
  /// come from the machine's own configuration.
  public struct State: Codable, Equatable {
    var address: UInt32
    var configSpaces: [Int: [UInt8]]
  }
  public static let stateVersion = 1
  public var snapshotKind: String { "pci-host" }

  public func captureState() -> State {
    var spaces: [Int: [UInt8]] = [:]
    for (key, f) in functions {
      if let c = f as? PCIConfigSpace { spaces[key] = c.bytes }
    }
    return State(address: address, configSpaces: spaces)
  }

  public func applyState(_ s: State) throws {
    for (key, bytes) in s.configSpaces {
      try require(functions[key] is PCIConfigSpace, "no PCI function 00:\(key >> 3).\(key & 7)")
      try require(bytes.count == 256, "config space of \(bytes.count) bytes")
    }
    address = s.address & 0x80FF_FFFC
    for (key, bytes) in s.configSpaces {
      guard let c = functions[key] as? PCIConfigSpace else { continue }
      for i in 0..<256 { c.bytes[i] = (c.bytes[i] & ~c.writable[i]) | (bytes[i] & c.writable[i]) }
      remap(key)
    }
  }
}
