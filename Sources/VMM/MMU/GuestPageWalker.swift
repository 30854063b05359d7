import Engine
import Memory
import X86

/// The VMM's software walk of the guest's own 4-level page tables (what KVM's
/// `paging_tmpl.h` does for shadow paging). Same rules as the interpreter's
/// hardware walk: reserved bits, U/S, R/W with CR0.WP, NX, SMEP, and A/D updates.
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
    /// 1 = 4 KiB PTE, 2 = 2 MiB PDE, 3 = 1 GiB PDPTE.
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
    var table = regs.cr3 & PTE.addressMask
    var level = 4
    var rw = true
    var us = true
    var nx = false
    var steps: [Step] = []
    while true {
      let shift = UInt64(12 + 9 * (level - 1))
      let ea = table | ((gva >> shift) & 0x1FF) << 3
      guard memory.isRAM(GuestPhysicalAddress(ea), length: 8),
        var e = try? memory.read(GuestPhysicalAddress(ea), as: UInt64.self)
      else {
        return .machineCheck(
          "page walk hit non-RAM GPA 0x\(String(ea, radix: 16)) (CR3 0x\(String(regs.cr3, radix: 16)))"
        )
      }
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
}
