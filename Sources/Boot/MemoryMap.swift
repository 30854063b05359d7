import Memory

/// The guest-physical memory map that firmware reports (multiboot mmap, e820).
public struct MemoryMapEntry: Equatable {
  public enum Kind: UInt32 { case usable = 1, reserved = 2, acpiReclaimable = 3, acpiNVS = 4 }
  public var base: UInt64
  public var length: UInt64
  public var kind: Kind
}

public enum MemoryMap {
  /// The end of conventional memory below 1 MiB that we report usable (the EBDA starts here).
  public static let lowMemoryEnd: UInt64 = 0x9_FC00

  /// Size of the firmware-table area at the top of RAM below 4 GiB, reserved
  /// like SeaBIOS's high zone (so multiboot guests see the same mem_upper as under QEMU).
  public static let firmwareAreaSize: UInt64 = 128 << 10

  /// Start of the reserved firmware-table area.
  public static func firmwareArea(for memory: GuestMemory) -> UInt64? {
    guard let low = memory.regions.first(where: { $0.start.rawValue == 0 }),
      low.end >= 0x20_0000 + firmwareAreaSize
    else { return nil }
    return low.end - firmwareAreaSize
  }

  /// A PC-style map for the given RAM regions: low memory, the legacy
  /// ROM/VGA hole reserved, RAM from 1 MiB up with the firmware area reserved.
  public static func pc(for memory: GuestMemory) -> [MemoryMapEntry] {
    var out: [MemoryMapEntry] = [
      MemoryMapEntry(base: 0, length: lowMemoryEnd, kind: .usable),
      MemoryMapEntry(base: lowMemoryEnd, length: 0xA_0000 - lowMemoryEnd, kind: .reserved),
      MemoryMapEntry(base: 0xF_0000, length: 0x1_0000, kind: .reserved),
    ]
    let firmware = firmwareArea(for: memory)
    for r in memory.regions {
      let start = max(r.start.rawValue, 0x10_0000)
      var end = r.end
      if let f = firmware, f >= start, f < end { end = f }
      if end > start {
        out.append(MemoryMapEntry(base: start, length: end - start, kind: .usable))
      }
      if end < r.end {
        out.append(MemoryMapEntry(base: end, length: r.end - end, kind: .reserved))
      }
    }
    return out
  }
}
