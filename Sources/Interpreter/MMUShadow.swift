import Engine
import Memory
import X86

// Shadow paging and paravirt, hardware side.
//
// Shadow: the CPU walks only the shadow table (GVA -> HPA) that the VMM's
// shadow MMU built, rooted at the shadow CR3 it installed. It never reads guest
// page tables. Anything missing or not permitted goes to the VMM's `shadowMiss` hook;
// the VMM walks the guest table in software and either fills the entry or
// injects the guest's #PF. A store to a guest page-table frame the VMM
// write-protects is held back and handed to the VMM (`.writeProtected`).
//
// Paravirt: the direct walk over the guest's own (VMM-validated) tables, plus
// write protection of pinned frames: such a store raises #PF(P|W) in the guest.

extension InterpreterCPU {

  func walkShadow(_ lin: UInt64, _ kind: AccessKind, user: Bool) throws(Fault) -> Translation {
    stats.pageWalks &+= 1
    let h = mmuHW
    let pool = memory.pool
    let limit = pool.byteSize
    var table = h.shadowRoot
    var level = 4
    // In shadow mode the real paging is always on and 4-level: a 32-bit linear
    // address (guest paging off or legacy modes) is just a small GVA.
    while true {
      guard table != 0 else { throw shadowMiss(lin, kind, user: user) }
      let shift = UInt64(12 + 9 * (level - 1))
      let ea = table | ((lin >> shift) & 0x1FF) << 3
      guard ea + 8 <= limit else { throw machineCheck("shadow table outside the host frame pool") }
      h.shadowRefs &+= 1
      stats.pageWalkRefs &+= 1
      let e = pool.pointer(HostPhysicalAddress(ea)).loadUnaligned(as: UInt64.self)
      if e & PTE.present == 0 { throw shadowMiss(lin, kind, user: user) }
      if level > 1 {
        table = e & PTE.addressMask
        level -= 1
        continue
      }
      // Leaf: the VMM put the guest's effective permissions here.
      let w = e & PTE.writable != 0
      let u = e & PTE.user != 0
      if user && !u { throw shadowMiss(lin, kind, user: user) }
      if kind == .write && !w { throw shadowMiss(lin, kind, user: user) }
      if kind == .fetch
        && (e & PTE.nx != 0 || (!user && u && cr4 & CR4.smep != 0))
      {
        throw shadowMiss(lin, kind, user: user)
      }
      let global = e & PTE.global != 0 && cr4 & CR4.pge != 0
      if e & ShadowEntry.mmio != 0 {
        var t = Translation(
          gpa: (e & PTE.addressMask) | (lin & 0xFFF), writeOK: false, global: global, large: false)
        t.resolved = true
        return t
      }
      let hpa = e & PTE.addressMask
      guard hpa + 4096 <= limit else {
        throw machineCheck(
          "shadow entry for GVA 0x" + String(lin, radix: 16) + " names no host frame")
      }
      let hf = hpa >> 12
      let gfn1 = h.m2p != nil && hf < h.m2pCount ? UInt64(h.m2p![Int(hf)]) : 0
      var t = Translation(
        gpa: gfn1 == 0 ? ~0 : ((gfn1 - 1) << 12) | (lin & 0xFFF), writeOK: w, global: global,
        large: false)
      t.host = pool.pointer(HostPhysicalAddress(hpa))
      t.resolved = true
      if w && gfn1 != 0 && h.flags(gfn1 - 1) & GuestFrameFlag.writeProtected != 0 {
        // A guest page-table frame: never cache it writable; a store goes to the VMM.
        t.writeOK = false
        if kind == .write {
          t.trapStore = true
          t.host = nil
        }
      }
      return t
    }
  }

  func shadowMiss(_ lin: UInt64, _ kind: AccessKind, user: Bool) -> Fault {
    mmuEvent(.miss(gva: lin, write: kind == .write, user: user, fetch: kind == .fetch))
    return Fault.exit
  }

  /// Paravirt: the direct walk, but pinned (write-protected) frames are read-only
  /// to every guest store. The check walks as a read first so that a refused
  /// store sets no D bit, exactly as a read-only PTE would.
  func walkParavirt(_ lin: UInt64, _ kind: AccessKind, user: Bool) throws(Fault) -> Translation {
    if cr0 & CR0.pg == 0 {
      return Translation(gpa: lin & 0xFFFF_FFFF, writeOK: true, global: false, large: false)
    }
    if kind == .write && mmuHW.frameFlags != nil {
      if let t = try? walkDirect(lin, .read, user: user),
        mmuHW.flags(t.gpa >> 12) & GuestFrameFlag.writeProtected != 0
      {
        mmuHW.pvWriteFaults &+= 1
        throw pageFault(lin, .write, user: user, present: true)
      }
    }
    var t = try walkDirect(lin, kind, user: user)
    if t.writeOK && mmuHW.flags(t.gpa >> 12) & GuestFrameFlag.writeProtected != 0 {
      t.writeOK = false
    }
    return t
  }
}
