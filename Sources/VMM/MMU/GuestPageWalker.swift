import Engine
import Memory
import X86

/// The VMM's software walk of the guest's own page tables (what KVM's
/// `paging_tmpl.h` does for shadow paging), in every paging mode the interpreter
/// implements: 4-level, PAE and 32-bit (with PSE 4 MiB pages). Same rules as the
/// interpreter's hardware walk: reserved bits, U/S, R/W with CR0.WP, NX, SMEP, and
/// A/D updates. The shadow MMU shadows 4-level tables only; the debugger and
/// `--translate` use every mode. The caller handles CR0.PG = 0 (GPA = GVA).
struct GuestPageWalker {
  let memory: GuestMemory
  /// CPUID 0x80000001 EDX bit 26.
  let has1G: Bool

  struct Step {
    var level: Int
    var entryGPA: UInt64
    var value: UInt64
  }

  struct Leaf {
    /// GPA of the 4 KiB piece holding the address.
    var gpa: UInt64
    var rw: Bool
    var us: Bool
    var nx: Bool
    var global: Bool
    var dirty: Bool
    /// 1 = 4 KiB PTE, 2 = 2 MiB (PAE, 4-level) or 4 MiB (32-bit) PDE, 3 = 1 GiB PDPTE.
    var level: Int
    var steps: [Step]
  }

  enum Result {
    case ok(Leaf)
    case fault(code: UInt32)
    /// The walk itself reached non-RAM: an MCE-like VM stop, as in direct mode.
    case machineCheck(String)
  }

  static let rsvdHigh: UInt64 = 0x000F_F000_0000_0000

  /// Walks `gva` for an access; with `update`, sets A (and D for writes) as hardware does.
  func walk(
    _ gva: UInt64, regs: PagingRegisters, write: Bool, user: Bool, fetch: Bool, update: Bool = true
  ) -> Result {
    let nxe = regs.efer & EFER.nxe != 0
    let wp = regs.cr0 & CR0.wp != 0
    let smep = regs.cr4 & CR4.smep != 0
    func fault(present: Bool, rsvd: Bool = false) -> Result {
      var code: UInt32 = 0
      if present { code |= PageFaultError.present }
      if write { code |= PageFaultError.write }
      if user { code |= PageFaultError.user }
      if rsvd { code |= PageFaultError.reserved | PageFaultError.present }
      if fetch && (nxe || smep) { code |= PageFaultError.fetch }
      return .fault(code: code)
    }
    if regs.cr4 & CR4.pae == 0 {
      return walk32(
        gva & 0xFFFF_FFFF, regs: regs, write: write, user: user, fetch: fetch, update: update
      ) { fault(present: $0, rsvd: $1) }
    }
    var table = regs.cr3 & PTE.addressMask
    var level = 4
    var steps: [Step] = []
    if regs.efer & EFER.lma == 0 {
      // PAE: four PDPTEs at CR3 (32-byte aligned), with no R/W, U/S or NX bits.
      let lin = gva & 0xFFFF_FFFF
      let ea = (regs.cr3 & 0xFFFF_FFE0) | ((lin >> 27) & 0x18)
      guard let e = entry(ea, wide: true) else { return walkHitNonRAM(ea, regs) }
      steps.append(Step(level: 3, entryGPA: ea, value: e))
      if e & PTE.present == 0 { return fault(present: false) }
      if e & (GuestPageWalker.rsvdHigh | 0x1E6) != 0 { return fault(present: true, rsvd: true) }
      table = e & PTE.addressMask
      level = 2
    }
    var rw = true
    var us = true
    var nx = false
    while true {
      let shift = UInt64(12 + 9 * (level - 1))
      let ea = table | ((gva >> shift) & 0x1FF) << 3
      guard var e = entry(ea, wide: true) else { return walkHitNonRAM(ea, regs) }
      steps.append(Step(level: level, entryGPA: ea, value: e))
      if e & PTE.present == 0 { return fault(present: false) }
      let ps = e & PTE.pageSize != 0
      var rsvd = e & GuestPageWalker.rsvdHigh != 0 || (!nxe && e & PTE.nx != 0)
      if level == 4 && ps { rsvd = true }
      if level == 3 && ps && (!has1G || e & 0x3FFF_E000 != 0) { rsvd = true }
      if level == 2 && ps && e & 0x1F_E000 != 0 { rsvd = true }
      if rsvd { return fault(present: true, rsvd: true) }
      rw = rw && e & PTE.writable != 0
      us = us && e & PTE.user != 0
      nx = nx || (nxe && e & PTE.nx != 0)
      if level == 1 || (ps && level <= 3) {
        if user && !us { return fault(present: true) }
        if write && !(rw || (!user && !wp)) { return fault(present: true) }
        if fetch && (nx || (!user && us && smep)) { return fault(present: true) }
        let leafValue = e | PTE.accessed | (write ? PTE.dirty : 0)
        if update && leafValue != e {
          try? memory.write(GuestPhysicalAddress(ea), value: leafValue)
          steps[steps.count - 1].value = leafValue
        }
        let mask: UInt64 = (1 << shift) - 1
        let base = e & PTE.addressMask & ~mask
        return .ok(
          Leaf(
            gpa: (base | (gva & mask)) & ~0xFFF, rw: rw, us: us, nx: nx,
            global: e & PTE.global != 0, dirty: leafValue & PTE.dirty != 0, level: level,
            steps: steps))
      }
      if update && e & PTE.accessed == 0 {
        e |= PTE.accessed
        try? memory.write(GuestPhysicalAddress(ea), value: e)
        steps[steps.count - 1].value = e
      }
      table = e & PTE.addressMask
      level -= 1
    }
  }

  /// The paging entry at `ea` (8 or 4 bytes), nil outside RAM.
  private func entry(_ ea: UInt64, wide: Bool) -> UInt64? {
    guard memory.isRAM(GuestPhysicalAddress(ea), length: wide ? 8 : 4) else { return nil }
    return wide
      ? try? memory.read(GuestPhysicalAddress(ea), as: UInt64.self)
      : (try? memory.read(GuestPhysicalAddress(ea), as: UInt32.self)).map(UInt64.init)
  }

  private func walkHitNonRAM(_ ea: UInt64, _ regs: PagingRegisters) -> Result {
    .machineCheck(
      "page walk hit non-RAM GPA 0x\(String(ea, radix: 16)) (CR3 0x\(String(regs.cr3, radix: 16)))"
    )
  }

  /// 32-bit paging: 4-byte entries, a PDE maps a 4 MiB page when CR4.PSE is set
  /// (PSE-36 base bits 39:32 in bits 20:13; bit 21 reserved with MAXPHYADDR 40).
  /// No NX and no reserved bits otherwise.
  private func walk32(
    _ lin: UInt64, regs: PagingRegisters, write: Bool, user: Bool, fetch: Bool, update: Bool,
    fault: (_ present: Bool, _ rsvd: Bool) -> Result
  ) -> Result {
    let wp = regs.cr0 & CR0.wp != 0
    var steps: [Step] = []
    var rw = true
    var us = true
    var table = regs.cr3 & 0xFFFF_F000
    var level = 2
    while true {
      let ea = table | ((lin >> (level == 2 ? 20 : 10)) & 0xFFC)
      guard let e = entry(ea, wide: false) else { return walkHitNonRAM(ea, regs) }
      steps.append(Step(level: level, entryGPA: ea, value: e))
      if e & PTE.present == 0 { return fault(false, false) }
      let large = level == 2 && e & PTE.pageSize != 0 && regs.cr4 & CR4.pse != 0
      if large && e & (1 << 21) != 0 { return fault(true, true) }
      rw = rw && e & PTE.writable != 0
      us = us && e & PTE.user != 0
      if level == 1 || large {
        if user && !us { return fault(true, false) }
        if write && !(rw || (!user && !wp)) { return fault(true, false) }
        if fetch && !user && us && regs.cr4 & CR4.smep != 0 { return fault(true, false) }
        let leafValue = e | PTE.accessed | (write ? PTE.dirty : 0)
        if update && leafValue != e {
          try? memory.write(GuestPhysicalAddress(ea), value: UInt32(truncatingIfNeeded: leafValue))
          steps[steps.count - 1].value = leafValue
        }
        let base =
          large ? (e & 0xFFC0_0000) | ((e >> 13) & 0xFF) << 32 | (lin & 0x3F_F000) : e & 0xFFFF_F000
        return .ok(
          Leaf(
            gpa: base, rw: rw, us: us, nx: false, global: e & PTE.global != 0,
            dirty: leafValue & PTE.dirty != 0, level: level, steps: steps))
      }
      if update && e & PTE.accessed == 0 {
        try? memory.write(
          GuestPhysicalAddress(ea), value: UInt32(truncatingIfNeeded: e | PTE.accessed))
        steps[steps.count - 1].value = e | PTE.accessed
      }
      table = e & 0xFFFF_F000
      level = 1
    }
  }
}
