import X86

/// One cache level as the CPUID cache leaves describe it.
public struct CacheLevel: Equatable, Sendable {
  public enum Kind: UInt32, Sendable {
    case data = 1
    case instruction = 2
    case unified = 3
  }
  public var kind: Kind
  public var level: UInt32
  public var sizeKiB: UInt32
  public var ways: UInt32
  public var lineSize: UInt32 = 64
  /// Logical CPUs sharing it (leaf 4 EAX[25:14] + 1).
  public var sharedBy: UInt32 = 1

  public var sets: UInt32 { sizeKiB * 1024 / (ways * lineSize) }
}

/// The cache and TLB hierarchy every policy reports: no real cache is modelled (the
/// interpreter has none, and KVM guests get what these leaves say, as QEMU's do), but
/// guests size buffers and print it. A plausible modern core: 32 KiB 8-way L1d and L1i,
/// 1 MiB 16-way L2, 16 MiB 16-way L3, 64-byte lines.
public enum CPUIDCacheLeaves {
  public static let standard: [CacheLevel] = [
    CacheLevel(kind: .data, level: 1, sizeKiB: 32, ways: 8),
    CacheLevel(kind: .instruction, level: 1, sizeKiB: 32, ways: 8),
    CacheLevel(kind: .unified, level: 2, sizeKiB: 1024, ways: 16),
    CacheLevel(kind: .unified, level: 3, sizeKiB: 16 * 1024, ways: 16),
  ]

  /// The leaves, by vendor: Intel's deterministic leaf 4 (one subleaf per level, then a
  /// null one) with leaf 2 saying "see leaf 4" (descriptor 0xFF); AMD's 0x80000005
  /// (L1 and L1 TLBs) and 0x80000006 (L2, L3, L2 TLBs). Intel defines only ECX of
  /// 0x80000006 (the L2), which it gets too.
  public static func entries(intel: Bool, caches: [CacheLevel] = standard) -> [CPUIDEntry] {
    let l1d = caches.first { $0.level == 1 && $0.kind == .data }
    let l1i = caches.first { $0.level == 1 && $0.kind == .instruction }
    let l2 = caches.first { $0.level == 2 }
    let l3 = caches.first { $0.level == 3 }
    if intel {
      var e: [CPUIDEntry] = [
        // AL = 1 (one iteration); 0xFF: no cache descriptors here, use leaf 4.
        CPUIDEntry(function: 2, result: CPUIDResult(eax: 0x0000_FF01))
      ]
      for (i, c) in (caches + [nil]).enumerated() {
        e.append(
          CPUIDEntry(
            function: 4, index: UInt32(i), indexed: true,
            result: c.map(deterministic) ?? CPUIDResult()))
      }
      e.append(
        CPUIDEntry(function: 0x8000_0005, result: CPUIDResult()))
      e.append(
        CPUIDEntry(function: 0x8000_0006, result: CPUIDResult(ecx: l2.map(amdL2) ?? 0)))
      return e
    }
    // L1 TLBs: 64 entries fully associative for 4K pages, 32 for 2M/4M (data and code).
    let l1TLB4K: UInt32 = 0xFF40_FF40
    let l1TLB2M: UInt32 = 0xFF20_FF20
    // L2 TLBs: 2048 entries 8-way (encoded 6) for 4K, 1024 for 2M/4M.
    let l2TLB4K: UInt32 = 0x6800_6800
    let l2TLB2M: UInt32 = 0x6400_6400
    return [
      CPUIDEntry(
        function: 0x8000_0005,
        result: CPUIDResult(
          eax: l1TLB2M, ebx: l1TLB4K, ecx: l1d.map(amdL1) ?? 0, edx: l1i.map(amdL1) ?? 0)),
      CPUIDEntry(
        function: 0x8000_0006,
        result: CPUIDResult(
          eax: l2TLB2M, ebx: l2TLB4K, ecx: l2.map(amdL2) ?? 0, edx: l3.map(amdL3) ?? 0)),
    ]
  }

  /// AMD's topology extensions (CPUID 0x80000001 ECX.TopologyExtensions): the caches
  /// again in 0x8000001D, one subleaf per level and a null one (leaf 4's layout, AMD
  /// APM Fn8000_001D), and 0x8000001E with one core per compute unit on node 0 (the
  /// engine fills in each CPU's APIC ID, as it does for leaf 1).
  public static func topologyEntries(caches: [CacheLevel] = standard) -> [CPUIDEntry] {
    var e: [CPUIDEntry] = []
    for (i, c) in (caches + [nil]).enumerated() {
      var r = c.map(deterministic) ?? CPUIDResult()
      r.eax &= 0x03FF_FFFF  // bits 31:26 are reserved on AMD
      e.append(CPUIDEntry(function: 0x8000_001D, index: UInt32(i), indexed: true, result: r))
    }
    e.append(CPUIDEntry(function: 0x8000_001E, result: CPUIDResult()))
    return e
  }

  /// Leaf 4 (and AMD's 0x8000001D) format.
  static func deterministic(_ c: CacheLevel) -> CPUIDResult {
    let eax = c.kind.rawValue | c.level << 5 | 1 << 8 | (c.sharedBy - 1) << 14
    let ebx = (c.lineSize - 1) | 0 << 12 | (c.ways - 1) << 22
    // L3 inclusive, as on Intel client parts; WBINVD reaches lower levels (bit 0 clear).
    let edx: UInt32 = c.level == 3 ? 1 << 1 : 0
    return CPUIDResult(eax: eax, ebx: ebx, ecx: c.sets - 1, edx: edx)
  }

  /// 0x80000005 ECX/EDX: size KiB, associativity (0xFF fully), lines per tag, line size.
  static func amdL1(_ c: CacheLevel) -> UInt32 {
    c.sizeKiB << 24 | c.ways << 16 | 1 << 8 | c.lineSize
  }

  /// 0x80000006 ECX: size KiB, encoded associativity, lines per tag, line size.
  static func amdL2(_ c: CacheLevel) -> UInt32 {
    c.sizeKiB << 16 | amdAssociativity(c.ways) << 12 | 1 << 8 | c.lineSize
  }

  /// 0x80000006 EDX: size in 512 KiB units, encoded associativity, lines per tag, line size.
  static func amdL3(_ c: CacheLevel) -> UInt32 {
    (c.sizeKiB / 512) << 18 | amdAssociativity(c.ways) << 12 | 1 << 8 | c.lineSize
  }

  /// The 4-bit L2/L3 associativity code of the AMD APM (CPUID Fn8000_0006).
  static func amdAssociativity(_ ways: UInt32) -> UInt32 {
    switch ways {
    case 1: return 1
    case 2: return 2
    case 3: return 3
    case 4: return 4
    case 6: return 5
    case 8: return 6
    case 16: return 8
    case 32: return 0xA
    case 48: return 0xB
    case 64: return 0xC
    case 96: return 0xD
    case 128: return 0xE
    default: return 0xF  // fully associative
    }
  }
}

extension CPUIDPolicy {
  /// True when leaf 0 says GenuineIntel.
  public var isIntel: Bool {
    let v = CPUIDPolicy.registers(fromVendor: "GenuineIntel")
    let r = lookup(leaf: 0, subleaf: 0)
    return r.ebx == v.ebx && r.ecx == v.ecx && r.edx == v.edx
  }

  /// Replaces the cache leaves with the standard hierarchy in the vendor's format.
  /// With `topoext` on an AMD policy, leaves 0x8000001D/E too (and the extended
  /// range reaches them). It is off by default: QEMU's TCG does not offer it.
  public mutating func setCacheLeaves() {
    entries.removeAll {
      [2, 4, 0x8000_0005, 0x8000_0006, 0x8000_001D, 0x8000_001E].contains($0.function)
    }
    entries += CPUIDCacheLeaves.entries(intel: isIntel)
    let topoext = CPUFeature.named("topoext")!
    if isIntel {
      set(topoext, false)
    } else if has(topoext) {
      entries += CPUIDCacheLeaves.topologyEntries()
      if let i = entries.firstIndex(where: { $0.function == 0x8000_0000 }),
        entries[i].result.eax < 0x8000_001E
      {
        entries[i].result.eax = 0x8000_001E
      }
    }
    entries.sort { ($0.function, $0.index) < ($1.function, $1.index) }
  }
}
