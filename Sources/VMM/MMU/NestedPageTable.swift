import Engine
import Memory
import X86

// Nested paging, hypervisor side: the VMM owns a 4-level GPA -> HPA table
// (EPT-like entries, see `NestedEntry`) in host frames of the pool, and fills
// it lazily when the CPU reports a nested page fault.

/// What the VMM decides for a nested page fault.
enum NestedFaultResolution: Equatable {
  case mapped
  case mmio
  case refused(String)
}

final class NestedPageTable {
  let memory: GuestMemory
  let frames: MMUFrameAllocator
  let root: UInt64
  /// Highest guest-physical address + 1 the VM may use (MAXPHYADDR = 40 bits).
  let physicalLimit: UInt64 = 1 << 40
  private(set) var tableFrames = 0
  private(set) var mappedPages = 0
  private(set) var mmioPages = 0
  private(set) var faults: UInt64 = 0

  init(memory: GuestMemory, frames: MMUFrameAllocator) throws {
    self.memory = memory
    self.frames = frames
    root = try frames.allocate()
    tableFrames = 1
  }

  /// Resolves a nested page fault: RAM is mapped 4 KiB at a time (guest frames
  /// are scattered in the pool, so there are no large nested pages); other
  /// GPAs inside the physical address width become MMIO entries; beyond it the VM stops.
  func handleFault(gpa: UInt64, write: Bool, fetch: Bool) throws -> NestedFaultResolution {
    faults += 1
    guard gpa < physicalLimit else {
      return .refused(
        "nested: guest-physical address 0x\(String(gpa, radix: 16)) is beyond the guest's physical address width (40 bits)"
      )
    }
    let entry: UInt64
    if let hpa = memory.hostPhysical(GuestPhysicalAddress(gpa & ~0xFFF)) {
      entry = hpa.rawValue | NestedEntry.rwx
      mappedPages += 1
    } else {
      entry = (gpa & ~0xFFF) | NestedEntry.mmio
      mmioPages += 1
    }
    let p = try leafPointer(gpa, create: true)!
    let old = p.load(as: UInt64.self)
    if old & NestedEntry.rwx != 0 && old != entry {
      return .refused("nested: entry for GPA 0x\(String(gpa, radix: 16)) changed under the CPU")
    }
    p.storeBytes(of: entry, as: UInt64.self)
    return entry & NestedEntry.rwx == NestedEntry.mmio ? .mmio : .mapped
  }

  /// Pointer to the level-1 entry for `gpa`, creating intermediate tables.
  private func leafPointer(_ gpa: UInt64, create: Bool) throws -> UnsafeMutableRawPointer? {
    var table = root
    for level in stride(from: 4, to: 1, by: -1) {
      let shift = UInt64(12 + 9 * (level - 1))
      let p = frames.pointer(table + ((gpa >> shift) & 0x1FF) * 8)
      var e = p.load(as: UInt64.self)
      if e & NestedEntry.rwx == 0 {
        guard create else { return nil }
        let t = try frames.allocate()
        tableFrames += 1
        e = t | NestedEntry.rwx
        p.storeBytes(of: e, as: UInt64.self)
      }
      table = e & NestedEntry.addressMask
    }
    return frames.pointer(table + ((gpa >> 12) & 0x1FF) * 8)
  }

  /// The nested entries on the way to `gpa`, for `--translate`: (level, HPA of entry, value).
  func chain(_ gpa: UInt64) -> [(level: Int, at: UInt64, value: UInt64)] {
    var out: [(Int, UInt64, UInt64)] = []
    var table = root
    for level in stride(from: 4, through: 1, by: -1) {
      let shift = UInt64(12 + 9 * (level - 1))
      let at = table + ((gpa >> shift) & 0x1FF) * 8
      let e = frames.pointer(at).load(as: UInt64.self)
      out.append((level, at, e))
      if e & NestedEntry.rwx == 0 { break }
      table = e & NestedEntry.addressMask
    }
    return out
  }
}

/// Host frames for the VMM's own tables (nested, shadow), taken from the same
/// pool as guest RAM and recycled here (the pool itself never takes frames back).
final class MMUFrameAllocator {
  let pool: HostFramePool
  private var free: [UInt64] = []
  private(set) var inUse = 0
  private(set) var peak = 0

  init(pool: HostFramePool) { self.pool = pool }

  /// A zeroed frame; returns its HPA.
  func allocate() throws -> UInt64 {
    let hpa: UInt64
    if let f = free.popLast() {
      hpa = f
    } else {
      hpa = try pool.allocateFrame().rawValue
    }
    pool.pointer(HostPhysicalAddress(hpa)).initializeMemory(
      as: UInt8.self, repeating: 0, count: 4096)
    inUse += 1
    peak = max(peak, inUse)
    return hpa
  }

  func release(_ hpa: UInt64) {
    pool.pointer(HostPhysicalAddress(hpa)).initializeMemory(
      as: UInt8.self, repeating: 0, count: 4096)
    free.append(hpa)
    inUse -= 1
  }

  @inline(__always) func pointer(_ hpa: UInt64) -> UnsafeMutableRawPointer {
    pool.pointer(HostPhysicalAddress(hpa))
  }
}
