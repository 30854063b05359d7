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

  /// A PC-style map for the given RAM regions: low memory, the legacy
  /// ROM/VGA hole reserved, then RAM from 1 MiB up.
  public static func pc(for memory: GuestMemory) -> [MemoryMapEntry] {
    var out: [MemoryMapEntry] = [
      MemoryMapEntry(base: 0, length: lowMemoryEnd, kind: .usable),
      MemoryMapEntry(base: lowMemoryEnd, length: 0xA_0000 - lowMemoryEnd, kind: .reserved),
      MemoryMapEntry(base: 0xF_0000, length: 0x1_0000, kind: .reserved),
    ]
    for r in memory.regions {
      let start = max(r.start.rawValue, 0x10_0000)
      if r.end > start {
        out.append(MemoryMapEntry(base: start, length: r.end - start, kind: .usable))
      }
    }
    return out
  }
}
