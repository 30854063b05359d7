import Engine
import Memory
import X86

// Nested paging, hardware side: the two-dimensional walk. The guest dimension
// is `walkDirect` unchanged; every guest page-table reference it makes goes
// through `ptePointer`, which in nested mode translates the GPA through the
// VMM's nested table (read here straight from host-physical pool memory, as
// the MMU hardware does). The final GPA is translated the same way.
// Cost of one 4-level walk: 4 guest refs + 5 nested walks of 4 refs = 24.

extension InterpreterCPU {

  /// Nested mode: guest walk (or no paging), then the final GPA through the nested table.
  func walkNested(_ lin: UInt64, _ kind: AccessKind, user: Bool) throws(Fault) -> Translation {
    var t: Translation
    if cr0 & CR0.pg == 0 {
      stats.pageWalks &+= 1  // a walk with no guest dimension: nested refs only
      t = Translation(gpa: lin & 0xFFFF_FFFF, writeOK: true, global: false, large: false)
    } else {
      t = try walkDirect(lin, kind, user: user)
    }
    let hpa = try nestedTranslate(t.gpa, write: kind == .write, fetch: kind == .fetch)
    if hpa == ~0 {
      t.host = nil  // MMIO: the slow path exits with the GPA
    } else {
      t.host = memory.pool.pointer(HostPhysicalAddress(hpa & ~0xFFF))
    }
    t.resolved = true
    return t
  }

  /// Guest page-table reference in nested mode (called by `ptePointer`).
  @inline(never)
  func nestedPTEPointer(_ gpa: UInt64) throws(Fault) -> UnsafeMutableRawPointer {
    // The walker writes A/D bits, so it needs write permission in the nested dimension.
    let hpa = try nestedTranslate(gpa, write: true, fetch: false)
    if hpa == ~0 {
      throw machineCheck(
        "page walk hit non-RAM GPA 0x" + String(gpa, radix: 16) + " (CR3 0x"
          + String(cr3, radix: 16)
          + ")")
    }
    return memory.pool.pointer(HostPhysicalAddress(hpa))
  }

  /// GPA -> HPA through the nested table; ~0 for an MMIO-marked entry.
  /// A missing or insufficient entry goes to the VMM's `nestedPageFault` hook (the instruction restarts).
  func nestedTranslate(_ gpa: UInt64, write: Bool, fetch: Bool) throws(Fault) -> UInt64 {
    let h = mmuHW
    h.nestedWalks &+= 1
    let page = gpa >> 12
    let slot = Int(truncatingIfNeeded: page) & (MMUHardwareState.nestedCacheSize - 1)
    if h.nestedCacheEnabled && h.ncTag[slot] == page {
      h.nestedCacheHits &+= 1
      return h.ncHPA[slot] | (gpa & 0xFFF)
    }
    let pool = memory.pool
    let limit = pool.byteSize
    var table = h.nestedRoot
    var level = 4
    while true {
      let shift = UInt64(12 + 9 * (level - 1))
      let ea = table | ((gpa >> shift) & 0x1FF) << 3
      guard table != 0, ea + 8 <= limit else {
        throw machineCheck("nested table root or entry outside the host frame pool")
      }
      h.nestedRefs &+= 1
      let e = pool.pointer(HostPhysicalAddress(ea)).loadUnaligned(as: UInt64.self)
      let perm = e & NestedEntry.rwx
      if perm == NestedEntry.mmio && level == 1 { return ~0 }
      if perm == 0 || (write && perm & NestedEntry.write == 0)
        || (fetch && perm & NestedEntry.exec == 0) || gpa >> 52 != 0
      {
        mmuEvent(.nestedFault(gpa: gpa, write: write, fetch: fetch))
        throw Fault.exit
      }
      let next = e & NestedEntry.addressMask
      if level == 1 {
        guard next + 4096 <= limit else {
          throw machineCheck(
            "nested entry for GPA 0x" + String(gpa, radix: 16) + " names no host frame")
        }
        if h.nestedCacheEnabled && perm == NestedEntry.rwx {
          h.ncTag[slot] = page
          h.ncHPA[slot] = next
        }
        return next | (gpa & 0xFFF)
      }
      table = next
      level -= 1
    }
  }
}
