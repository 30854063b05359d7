import Engine
import Memory
import X86

// The paravirtual MMU, hypervisor side: the hypercall ABI of docs/HYPERCALLS.md,
// validated the way Xen's mmu_update is. Pinned tables are write-protected in
// the CPU's frame-flag map (stores raise #PF in the guest); entries change only
// through HC_MMU_UPDATE, which validates each new value against its table's level
// and keeps reference counts so that no validated table can ever map a pinned
// page writable or point outside guest RAM.

final class PVMMU {
  enum HC {
    /// Every number of the ABI, for the VMM's hypercall table.
    static let all = hello...flush
    static let hello: UInt64 = 0x5356_0001
    static let mmuUpdate: UInt64 = 0x5356_0002
    static let pin: UInt64 = 0x5356_0003
    static let unpin: UInt64 = 0x5356_0004
    static let newBasePtr: UInt64 = 0x5356_0005
    static let invlpg: UInt64 = 0x5356_0006
    static let flush: UInt64 = 0x5356_0007
  }
  static let EPERM: Int64 = 1
  static let EFAULT: Int64 = 14
  static let EINVAL: Int64 = 22
  static let ENOSYS: Int64 = 38

  let memory: GuestMemory
  let flags: UnsafeMutablePointer<UInt8>
  let flagCount: UInt64
  let has1G: Bool
  static let rsvdHigh: UInt64 = 0x000F_F000_0000_0000

  private(set) var hello = false
  private(set) var strict = false
  /// Pinned table frames and their level.
  private var pinned: [UInt64: Int] = [:]
  /// References to a pinned frame: present non-leaf entries of pinned tables (+1 as base pointer).
  private var refs: [UInt64: Int] = [:]
  /// Writable leaves of pinned tables mapping a frame.
  private var writable: [UInt64: Int] = [:]
  private var basePtr: UInt64?

  private(set) var hypercalls: UInt64 = 0
  private(set) var updates: UInt64 = 0
  private(set) var rejected: UInt64 = 0
  var pinnedCount: Int { pinned.count }

  init(memory: GuestMemory, flags: UnsafeMutablePointer<UInt8>, flagCount: UInt64, has1G: Bool) {
    self.memory = memory
    self.flags = flags
    self.flagCount = flagCount
    self.has1G = has1G
  }

  /// Sets bit 0 of the SwiftVMM features leaf (0x40000001, or 0x40000101 when the
  /// KVM signature occupies 0x40000000).
  static func offer(in policy: inout CPUIDPolicy) {
    let sig = CPUIDPolicy.registers(fromSignature: "SwiftVMM")
    let base: UInt32
    if let e = policy.entries.first(where: { $0.function == 0x4000_0000 }), e.result.ebx == sig.ebx
    {
      base = 0x4000_0000
    } else {
      base = 0x4000_0100
      policy.entries.removeAll { $0.function == base || $0.function == base + 1 }
      policy.entries.append(
        CPUIDEntry(
          function: base,
          result: CPUIDResult(eax: base + 1, ebx: sig.ebx, ecx: sig.ecx, edx: sig.edx)))
    }
    if let i = policy.entries.firstIndex(where: { $0.function == base + 1 }) {
      policy.entries[i].result.eax |= 1
    } else {
      policy.entries.append(CPUIDEntry(function: base + 1, result: CPUIDResult(eax: 1)))
    }
  }

  // MARK: Exits

  /// A `.cr3Load` exit (MOV CR3 or paging enabled). Returns a stop message for non-PV guests.
  func handleCR3Load(cpu: SoftwareMMUHardware) -> String? {
    let regs = cpu.pagingRegisters
    guard hello else {
      return
        "paravirt: the guest enabled paging without the HC_PV_HELLO handshake (not a PV guest); run it with --mmu direct, nested or shadow"
    }
    if strict { setBase(regs.cr3 & PTE.addressMask) }
    return nil
  }

  /// One hypercall: returns RAX (and writes RDX where the ABI says so).
  func handleHypercall(cpu: SoftwareMMUHardware, number: UInt64, args: [UInt64]) -> UInt64 {
    hypercalls += 1
    let long = cpu.isIn64BitMode
    let a = args.map { long ? $0 : $0 & 0xFFFF_FFFF }
    let nr = long ? number : number & 0xFFFF_FFFF
    var rdx: UInt64?
    let result: Int64
    if cpu.currentPrivilegeLevel != 0 {
      result = -PVMMU.EPERM
    } else if nr == HC.hello {
      if a[0] == 1 {
        hello = true
        result = 1
      } else {
        result = -PVMMU.EINVAL
      }
    } else if nr < HC.hello || nr > HC.flush {
      result = -PVMMU.ENOSYS
    } else if !hello {
      result = -PVMMU.EPERM
    } else {
      switch nr {
      case HC.mmuUpdate: (result, rdx) = mmuUpdate(array: a[0], count: a[1], cpu: cpu)
      case HC.pin: (result, rdx) = pin(a[0], level: a[1], cpu: cpu)
      case HC.unpin: result = unpin(a[0])
      case HC.newBasePtr: result = newBase(a[0], cpu: cpu)
      case HC.invlpg:
        cpu.flushTranslation(linear: a[0])
        result = 0
      default:
        cpu.flushTranslations(includingGlobal: true)
        result = 0
      }
    }
    if result < 0 { rejected += 1 }
    let raw = UInt64(bitPattern: result)
    if let rdx { cpu.setGeneralRegister(2, long ? rdx : rdx & 0xFFFF_FFFF) }
    return long ? raw : raw & 0xFFFF_FFFF
  }

  // MARK: Hypercalls

  private func mmuUpdate(array: UInt64, count: UInt64, cpu: SoftwareMMUHardware) -> (Int64, UInt64?)
  {
    guard count <= 512, array & 7 == 0 else { return (-PVMMU.EINVAL, 0) }
    guard count == 0 || memory.isRAM(GuestPhysicalAddress(array), length: count * 16) else {
      return (-PVMMU.EFAULT, 0)
    }
    for i in 0..<count {
      guard let ptr = try? memory.read(GuestPhysicalAddress(array + i * 16), as: UInt64.self),
        let val = try? memory.read(GuestPhysicalAddress(array + i * 16 + 8), as: UInt64.self)
      else { return (-PVMMU.EFAULT, i) }
      if ptr & 7 != 0 { return (-PVMMU.EINVAL, i) }
      guard memory.isRAM(GuestPhysicalAddress(ptr), length: 8) else { return (-PVMMU.EFAULT, i) }
      guard let level = pinned[ptr >> 12] else { return (-PVMMU.EPERM, i) }
      if let err = validate(val, level: level) { return (-err, i) }
      let old = (try? memory.read(GuestPhysicalAddress(ptr), as: UInt64.self)) ?? 0
      take(val, level: level)
      drop(old, level: level)
      try? memory.write(GuestPhysicalAddress(ptr), value: val)
      updates += 1
    }
    return (Int64(count), nil)
  }

  private func pin(_ gpa: UInt64, level: UInt64, cpu: SoftwareMMUHardware) -> (Int64, UInt64?) {
    guard gpa & 0xFFF == 0, (1...4).contains(level) else { return (-PVMMU.EINVAL, nil) }
    guard memory.isRAM(GuestPhysicalAddress(gpa), length: 4096) else { return (-PVMMU.EFAULT, nil) }
    let gfn = gpa >> 12
    if let l = pinned[gfn] { return l == Int(level) ? (0, nil) : (-PVMMU.EPERM, nil) }
    if writable[gfn, default: 0] > 0 { return (-PVMMU.EPERM, 512) }
    let entries = (0..<512).map {
      (try? memory.read(GuestPhysicalAddress(gpa + UInt64($0) * 8), as: UInt64.self)) ?? 0
    }
    for (i, e) in entries.enumerated() {
      if let err = validate(e, level: Int(level)) { return (-err, UInt64(i)) }
      // A table may not map itself writable either (it is about to be pinned).
      if isLeaf(e, level: Int(level)), e & PTE.writable != 0,
        leafFrames(e, level: Int(level)).contains(gfn)
      {
        return (-PVMMU.EPERM, UInt64(i))
      }
    }
    for e in entries { take(e, level: Int(level)) }
    pinned[gfn] = Int(level)
    setFlags(gfn, level: Int(level))
    // Writable translations of the frame may still be cached.
    cpu.flushTranslations(includingGlobal: true)
    return (0, nil)
  }

  private func unpin(_ gpa: UInt64) -> Int64 {
    let gfn = gpa >> 12
    guard gpa & 0xFFF == 0, let level = pinned[gfn] else { return -PVMMU.EINVAL }
    if refs[gfn, default: 0] > 0 { return -PVMMU.EPERM }
    for i in 0..<512 {
      let e = (try? memory.read(GuestPhysicalAddress(gpa + UInt64(i) * 8), as: UInt64.self)) ?? 0
      drop(e, level: level)
    }
    pinned[gfn] = nil
    setFlags(gfn, level: 0)
    return 0
  }

  private func newBase(_ gpa: UInt64, cpu: SoftwareMMUHardware) -> Int64 {
    if gpa & 0xFFF != 0 { return -PVMMU.EINVAL }
    guard pinned[gpa >> 12] == 4 else { return -PVMMU.EPERM }
    setBase(gpa)
    strict = true
    cpu.setParavirtStrict(true)
    cpu.loadCR3(gpa)
    return 0
  }

  private func setBase(_ gpa: UInt64) {
    let gfn = gpa >> 12
    if basePtr == gfn { return }
    if let old = basePtr { refs[old, default: 1] -= 1 }
    refs[gfn, default: 0] += 1
    basePtr = gfn
  }

  // MARK: Validation (docs/HYPERCALLS.md section 4)

  private func isLeaf(_ e: UInt64, level: Int) -> Bool {
    e & PTE.present != 0 && (level == 1 || (level <= 3 && e & PTE.pageSize != 0))
  }

  private func leafFrames(_ e: UInt64, level: Int) -> ClosedRange<UInt64> {
    let size: UInt64 = level == 1 ? 1 : (level == 2 ? 512 : 512 * 512)
    let base = ((e & PTE.addressMask) >> 12) & ~(size - 1)
    return base...(base + size - 1)
  }

  /// nil if `e` may sit in a table pinned at `level`, else the errno.
  private func validate(_ e: UInt64, level: Int) -> Int64? {
    guard e & PTE.present != 0 else { return nil }
    if e & PVMMU.rsvdHigh != 0 { return PVMMU.EINVAL }
    let ps = e & PTE.pageSize != 0
    if level == 4 && ps { return PVMMU.EINVAL }
    if level == 3 && ps && (!has1G || e & 0x3FFF_E000 != 0) { return PVMMU.EINVAL }
    if level == 2 && ps && e & 0x1F_E000 != 0 { return PVMMU.EINVAL }
    if isLeaf(e, level: level) {
      let frames = leafFrames(e, level: level)
      guard
        memory.isRAM(
          GuestPhysicalAddress(frames.lowerBound << 12), length: UInt64(frames.count) << 12)
      else { return PVMMU.EFAULT }
      if e & PTE.writable != 0 {
        if frames.count == 1 {
          if pinned[frames.lowerBound] != nil { return PVMMU.EPERM }
        } else if pinned.keys.contains(where: { frames.contains($0) }) {
          return PVMMU.EPERM
        }
      }
      return nil
    }
    let target = (e & PTE.addressMask) >> 12
    guard memory.isRAM(GuestPhysicalAddress(target << 12), length: 4096) else {
      return PVMMU.EFAULT
    }
    guard pinned[target] == level - 1 else { return PVMMU.EPERM }
    return nil
  }

  /// Accounts the references a (validated) entry holds.
  private func take(_ e: UInt64, level: Int) { account(e, level: level, by: 1) }
  private func drop(_ e: UInt64, level: Int) { account(e, level: level, by: -1) }

  private func account(_ e: UInt64, level: Int, by d: Int) {
    guard e & PTE.present != 0 else { return }
    if isLeaf(e, level: level) {
      guard e & PTE.writable != 0 else { return }
      for f in leafFrames(e, level: level) {
        let n = writable[f, default: 0] + d
        writable[f] = n > 0 ? n : nil
      }
    } else {
      let t = (e & PTE.addressMask) >> 12
      let n = refs[t, default: 0] + d
      refs[t] = n > 0 ? n : nil
    }
  }

  private func setFlags(_ gfn: UInt64, level: Int) {
    guard gfn < flagCount else { return }
    var f = flags[Int(gfn)] & ~(GuestFrameFlag.writeProtected | GuestFrameFlag.pinnedMask)
    if level > 0 { f |= GuestFrameFlag.writeProtected | UInt8(level) << GuestFrameFlag.pinnedShift }
    flags[Int(gfn)] = f
  }
}
