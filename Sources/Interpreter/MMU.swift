import Engine
import Memory
import X86

/// Direct-mapped soft TLB. Each slot caches one 4 KiB linear page per access
/// kind (read / write / fetch); the tag includes the privilege (bit 0 = user),
/// so a hit is one compare, and the host pointer is `addend + linear`.
struct TLB {
  static let bits = 10
  static let size = 1 << bits
  static let mask = size - 1
  /// A tag no lookup key can equal (keys never have bit 1 set).
  static let invalid: UInt64 = ~0

  let rtag: UnsafeMutablePointer<UInt64>
  let wtag: UnsafeMutablePointer<UInt64>
  let xtag: UnsafeMutablePointer<UInt64>
  let radd: UnsafeMutablePointer<Int>
  let wadd: UnsafeMutablePointer<Int>
  let xadd: UnsafeMutablePointer<Int>
  /// Bit 0/1/2: the read/write/fetch entry maps a global page.
  let glob: UnsafeMutablePointer<UInt8>

  init() {
    rtag = .allocate(capacity: TLB.size)
    wtag = .allocate(capacity: TLB.size)
    xtag = .allocate(capacity: TLB.size)
    radd = .allocate(capacity: TLB.size)
    wadd = .allocate(capacity: TLB.size)
    xadd = .allocate(capacity: TLB.size)
    glob = .allocate(capacity: TLB.size)
    radd.initialize(repeating: 0, count: TLB.size)
    wadd.initialize(repeating: 0, count: TLB.size)
    xadd.initialize(repeating: 0, count: TLB.size)
    glob.initialize(repeating: 0, count: TLB.size)
    rtag.initialize(repeating: TLB.invalid, count: TLB.size)
    wtag.initialize(repeating: TLB.invalid, count: TLB.size)
    xtag.initialize(repeating: TLB.invalid, count: TLB.size)
  }

  func deallocate() {
    rtag.deallocate()
    wtag.deallocate()
    xtag.deallocate()
    radd.deallocate()
    wadd.deallocate()
    xadd.deallocate()
    glob.deallocate()
  }
}

enum AccessKind { case read, write, fetch }

/// The result of a successful page walk.
struct Translation {
  var gpa: UInt64
  /// The page may also be cached for writes at this privilege (W allowed and D already set).
  var writeOK: Bool
  var global: Bool
  var large: Bool
  /// log2 of the page size (12, 21, 22 or 30).
  var pageShift: UInt64 = 12
  /// Nested/shadow/paravirt modes: the mode resolved the host page itself
  /// (`host` nil then means MMIO, or a store held back when `trapStore`).
  var resolved = false
  var host: UnsafeMutableRawPointer? = nil
  var trapStore = false
}

extension InterpreterCPU {

  // MARK: TLB maintenance

  func flushTLB(keepGlobal: Bool) {
    stats.tlbFlushes &+= 1
    let t = tlb
    if keepGlobal && cr4 & CR4.pge != 0 {
      for i in 0..<TLB.size {
        let g = t.glob[i]
        if g & 1 == 0 { t.rtag[i] = TLB.invalid }
        if g & 2 == 0 { t.wtag[i] = TLB.invalid }
        if g & 4 == 0 { t.xtag[i] = TLB.invalid }
      }
    } else {
      t.rtag.update(repeating: TLB.invalid, count: TLB.size)
      t.wtag.update(repeating: TLB.invalid, count: TLB.size)
      t.xtag.update(repeating: TLB.invalid, count: TLB.size)
      t.glob.update(repeating: 0, count: TLB.size)
      tlbLargestPage = 12
    }
    mmuFlushHook(page: nil)
  }

  func flushTLBPage(_ lin: UInt64) {
    stats.tlbPageFlushes &+= 1
    let i = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    tlb.rtag[i] = TLB.invalid
    tlb.wtag[i] = TLB.invalid
    tlb.xtag[i] = TLB.invalid
    tlb.glob[i] = 0
    defer { mmuFlushHook(page: lin) }
    // Large pages are cached as 4 KiB pieces: drop the pieces of the 2 MiB region
    // around `lin` (512 slots); 4 MiB and 1 GiB pages cover every slot, so flush all.
    if tlbLargestPage > 21 {
      flushTLB(keepGlobal: false)
    } else if tlbLargestPage == 21 {
      let base = lin & ~0x1F_FFFF
      let first = Int(truncatingIfNeeded: base >> 12)
      for k in 0..<512 {
        let j = (first &+ k) & TLB.mask
        if (tlb.rtag[j] &- base) < 0x20_0000 { tlb.rtag[j] = TLB.invalid }
        if (tlb.wtag[j] &- base) < 0x20_0000 { tlb.wtag[j] = TLB.invalid }
        if (tlb.xtag[j] &- base) < 0x20_0000 { tlb.xtag[j] = TLB.invalid }
      }
    }
  }

  // MARK: Linear addresses

  @inline(__always) func linear(_ s: Int, _ off: UInt64) -> UInt64 {
    let l = segBase[s] &+ off
    return mode64 ? l : l & 0xFFFF_FFFF
  }

  @inline(__always) func isCanonical(_ a: UInt64) -> Bool {
    let top = Int64(bitPattern: a) >> 47
    return top == 0 || top == -1
  }

  // MARK: Fast paths

  @inline(__always) func readLin(_ lin: UInt64, _ size: Int) throws(Fault) -> UInt64 {
    let slot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    if tlb.rtag[slot] == (lin & ~0xFFF) | userKey && Int(lin & 0xFFF) &+ size <= 4096 {
      stats.tlbHits &+= 1
      let p = UnsafeRawPointer(bitPattern: tlb.radd[slot] &+ Int(bitPattern: UInt(lin)))
        .unsafelyUnwrapped
      switch size {
      case 1: return UInt64(p.load(as: UInt8.self))
      case 2: return UInt64(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
      case 4: return UInt64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
      default: return UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
      }
    }
    return try readSlow(lin, size, user: cpl == 3)
  }

  @inline(__always) func writeLin(_ lin: UInt64, _ size: Int, _ v: UInt64) throws(Fault) {
    let slot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    if tlb.wtag[slot] == (lin & ~0xFFF) | userKey && Int(lin & 0xFFF) &+ size <= 4096 {
      stats.tlbHits &+= 1
      let p = UnsafeMutableRawPointer(bitPattern: tlb.wadd[slot] &+ Int(bitPattern: UInt(lin)))
        .unsafelyUnwrapped
      switch size {
      case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
      case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian, as: UInt16.self)
      case 4: p.storeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian, as: UInt32.self)
      default: p.storeBytes(of: v.littleEndian, as: UInt64.self)
      }
      return
    }
    try writeSlow(lin, size, v, user: cpl == 3)
  }

  /// 64-bit mode inline with no segment checks; other modes out of line, checked.
  @inline(__always) func readMem(_ s: Int, _ off: UInt64, _ size: Int) throws(Fault) -> UInt64 {
    guard mode64 else { return try readMemLegacy(s, off, size) }
    do {
      return try readLin(segBase[s] &+ off, size)
    } catch {
      throw s == SS ? stackFault(error) : error
    }
  }

  @inline(__always) func writeMem(_ s: Int, _ off: UInt64, _ size: Int, _ v: UInt64) throws(Fault) {
    guard mode64 else { return try writeMemLegacy(s, off, size, v) }
    do {
      try writeLin(segBase[s] &+ off, size, v)
    } catch {
      throw s == SS ? stackFault(error) : error
    }
  }

  @inline(never) func readMemLegacy(_ s: Int, _ off: UInt64, _ size: Int) throws(Fault) -> UInt64 {
    do {
      try checkSegment(s, off, size, write: false)
      return try readLin((segBase[s] &+ off) & 0xFFFF_FFFF, size)
    } catch {
      throw s == SS ? stackFault(error) : error
    }
  }

  @inline(never)
  func writeMemLegacy(_ s: Int, _ off: UInt64, _ size: Int, _ v: UInt64) throws(Fault) {
    do {
      try checkSegment(s, off, size, write: true)
      try writeLin((segBase[s] &+ off) & 0xFFFF_FFFF, size, v)
    } catch {
      throw s == SS ? stackFault(error) : error
    }
  }

  /// Checks that a write of `size` bytes at `s:off` would not fault, without writing
  /// (INS probes its destination before the port read it cannot undo).
  func probeWrite(_ s: Int, _ off: UInt64, _ size: Int) throws(Fault) {
    do {
      try checkSegment(s, off, size, write: true)
      let lin = linear(s, off)
      let user = cpl == 3
      _ = try translateAccess(lin, .write, user: user)
      if Int(lin & 0xFFF) + size > 4096 {
        _ = try translateAccess((lin | 0xFFF) &+ 1, .write, user: user)
      }
    } catch {
      throw s == SS ? stackFault(error) : error
    }
  }

  /// A non-canonical SS-relative reference raises #SS(0), not #GP(0).
  @inline(never) func stackFault(_ f: Fault) -> Fault {
    f.vector == 13 ? Fault.ss(0) : f
  }

  /// Supervisor-privileged (implicit) accesses: descriptor tables, TSS, IDT.
  func readSys(_ lin: UInt64, _ size: Int) throws(Fault) -> UInt64 {
    try readSlow(mode64 ? lin : lin & 0xFFFF_FFFF, size, user: false)
  }

  func writeSys(_ lin: UInt64, _ size: Int, _ v: UInt64) throws(Fault) {
    try writeSlow(mode64 ? lin : lin & 0xFFFF_FFFF, size, v, user: false)
  }

  /// Access with an explicit privilege (interrupt delivery pushes at the new CPL).
  func writeAs(_ lin: UInt64, _ size: Int, _ v: UInt64, user: Bool) throws(Fault) {
    try writeSlow(lin, size, v, user: user)
  }

  func readAs(_ lin: UInt64, _ size: Int, user: Bool) throws(Fault) -> UInt64 {
    try readSlow(lin, size, user: user)
  }

  // MARK: Slow paths

  @inline(never)
  func readSlow(_ lin: UInt64, _ size: Int, user: Bool) throws(Fault) -> UInt64 {
    if Int(lin & 0xFFF) + size > 4096 {
      // Page-crossing: check both pages before reading (no partial effects).
      let lin2 = (lin | 0xFFF) &+ 1
      _ = try translateAccess(lin2, .read, user: user)
      var v: UInt64 = 0
      for i in 0..<size {
        v |= try readSlow(lin &+ UInt64(i), 1, user: user) << UInt64(i * 8)
      }
      return v
    }
    let gpa = try translateAccess(lin, .read, user: user)
    if watchActive { noteWatchedAccess(lin, size, write: false) }
    if let p = mmuHW.physHost {
      switch size {
      case 1: return UInt64(p.load(as: UInt8.self))
      case 2: return UInt64(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
      case 4: return UInt64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
      default: return UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
      }
    }
    // MMIO read: restart the instruction once the VMM supplies the value.
    let a = MMIOAccess(address: GuestPhysicalAddress(gpa), size: size, isWrite: false)
    if let v = replayMMIO(a) { return v & sizeMask(size) }
    try issueHeldMMIOWrites()
    mmioAwaited = a
    pendingMMIORead = true
    mmioRestart = true
    pendingExit = .mmio(a)
    throw Fault.exit
  }

  @inline(never)
  func writeSlow(_ lin: UInt64, _ size: Int, _ v: UInt64, user: Bool) throws(Fault) {
    if Int(lin & 0xFFF) + size > 4096 {
      let lin2 = (lin | 0xFFF) &+ 1
      _ = try translateAccess(lin, .write, user: user)
      _ = try translateAccess(lin2, .write, user: user)
      for i in 0..<size {
        try writeSlow(lin &+ UInt64(i), 1, v >> UInt64(i * 8), user: user)
      }
      return
    }
    let gpa = try translateAccess(lin, .write, user: user)
    if watchActive { noteWatchedAccess(lin, size, write: true) }
    if let p = mmuHW.physHost {
      switch size {
      case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
      case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian, as: UInt16.self)
      case 4: p.storeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian, as: UInt32.self)
      default: p.storeBytes(of: v.littleEndian, as: UInt64.self)
      }
      return
    }
    if interceptStore(lin, gpa, size, v) { return }
    // MMIO write: the instruction completes, then the exit is returned. An instruction
    // that writes MMIO more than once (a 16-byte store, a page-crossing store split
    // into bytes, ENTER's pushes) queues the later writes behind the first.
    let w = MMIOAccess(
      address: GuestPhysicalAddress(gpa), size: size, isWrite: true, value: v & sizeMask(size))
    if replayMMIO(w) != nil { return }  // a restart: the device has this write already
    if pendingExit == nil { exit(.mmio(w)) } else { queuedMMIOWrites.append(w) }
  }

  /// Linear -> guest-physical for one access, filling the TLB when the page is RAM.
  @inline(never)
  func translateAccess(_ lin: UInt64, _ kind: AccessKind, user: Bool) throws(Fault) -> UInt64 {
    stats.tlbMisses &+= 1
    if mode64 && !isCanonical(lin) { throw Fault.gp(0) }
    let t = try translate(lin, kind, user: user)
    let page = lin & ~0xFFF
    mmuHW.storeTrapped = t.trapStore
    guard let host = t.resolved ? t.host : memory.pagePointer(t.gpa & ~0xFFF) else {
      mmuHW.physHost = nil
      return t.gpa
    }
    mmuHW.physHost = host + Int(lin & 0xFFF)
    // A watched page is never cached for data, so every access to it comes here.
    if watchActive && kind != .fetch && isWatchedPage(page) { return t.gpa }
    let add = Int(bitPattern: host) &- Int(bitPattern: UInt(page))
    let key = page | (user ? 1 : 0)
    let slot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    let g: UInt8 = t.global ? 1 : 0
    if t.large { tlbLargestPage = max(tlbLargestPage, t.pageShift) }
    switch kind {
    case .read, .write:
      // A write fill leaves the read entry alone: src and dst of a copy may share a slot.
      if kind == .read {
        tlb.rtag[slot] = key
        tlb.radd[slot] = add
        tlb.glob[slot] = (tlb.glob[slot] & ~1) | g
      }
      if kind == .write || t.writeOK {
        tlb.wtag[slot] = key
        tlb.wadd[slot] = add
        tlb.glob[slot] = (tlb.glob[slot] & ~2) | (g << 1)
      }
    case .fetch:
      tlb.xtag[slot] = key
      tlb.xadd[slot] = add
      tlb.glob[slot] = (tlb.glob[slot] & ~4) | (g << 2)
    }
    return t.gpa
  }

  /// The MMU mode switch point: only the walk and its faults differ between modes.
  @inline(__always)
  func translate(_ lin: UInt64, _ kind: AccessKind, user: Bool) throws(Fault) -> Translation {
    switch options.mmuMode {
    case .direct:
      if cr0 & CR0.pg == 0 {
        return Translation(gpa: lin & 0xFFFF_FFFF, writeOK: true, global: false, large: false)
      }
      return try walkDirect(lin, kind, user: user)
    case .nested: return try walkNested(lin, kind, user: user)
    case .shadow: return try walkShadow(lin, kind, user: user)
    case .paravirt: return try walkParavirt(lin, kind, user: user)
    }
  }

  /// Pointer to a paging-structure entry; a walk into non-RAM stops the VM (MCE-like).
  @inline(__always) func ptePointer(_ gpa: UInt64) throws(Fault) -> UnsafeMutableRawPointer {
    stats.pageWalkRefs &+= 1
    if options.mmuMode == .nested { return try nestedPTEPointer(gpa) }
    if let p = memory.pagePointer(gpa) { return p }
    pendingExit = .shutdown(
      reason: "page walk hit non-RAM GPA 0x" + String(gpa, radix: 16) + " (CR3 0x"
        + String(cr3, radix: 16) + ")")
    throw Fault.exit
  }

  func pageFault(_ lin: UInt64, _ kind: AccessKind, user: Bool, present: Bool, rsvd: Bool = false)
    -> Fault
  {
    var code: UInt32 = 0
    if present { code |= PageFaultError.present }
    if kind == .write { code |= PageFaultError.write }
    if user { code |= PageFaultError.user }
    if rsvd { code |= PageFaultError.reserved | PageFaultError.present }
    if kind == .fetch && (efer & EFER.nxe != 0 || cr4 & CR4.smep != 0) {
      code |= PageFaultError.fetch
    }
    cr2 = lin
    stats.pageFaults &+= 1
    return Fault(vector: 14, code: code, hasCode: true)
  }

  /// Direct mode: the hardware walker reads guest page tables in guest-physical memory.
  func walkDirect(_ lin: UInt64, _ kind: AccessKind, user: Bool) throws(Fault) -> Translation {
    stats.pageWalks &+= 1
    let nxe = efer & EFER.nxe != 0
    let wp = cr0 & CR0.wp != 0
    let write = kind == .write
    var rw = true
    var us = true
    var nx = false
    // Reserved physical-address bits above MAXPHYADDR (40) in 64-bit entries.
    let rsvdHigh: UInt64 = 0x000F_F000_0000_0000
    var leaf: UInt64 = 0
    var leafPtr: UnsafeMutableRawPointer
    var pageMask: UInt64 = 0xFFF
    var global = false
    var large = false

    if cr4 & CR4.pae == 0 {
      // 32-bit paging (4-byte entries), PSE 4 MiB pages.
      let pdeA = (cr3 & 0xFFFF_F000) | ((lin >> 20) & 0xFFC)
      let pdeP = try ptePointer(pdeA)
      var pde = UInt64(pdeP.loadUnaligned(as: UInt32.self))
      if pde & PTE.present == 0 { throw pageFault(lin, kind, user: user, present: false) }
      rw = pde & PTE.writable != 0
      us = pde & PTE.user != 0
      if pde & PTE.pageSize != 0 && cr4 & CR4.pse != 0 {
        // PSE-36 with MAXPHYADDR 40: bit 21 is reserved.
        if pde & (1 << 21) != 0 {
          throw pageFault(lin, kind, user: user, present: true, rsvd: true)
        }
        leaf = pde
        leafPtr = pdeP
        pageMask = 0x3F_FFFF
        large = true
        let base = (pde & 0xFFC0_0000) | ((pde >> 13) & 0xFF) << 32
        try checkAccess(lin, kind, user: user, rw: rw, us: us, nx: false, wp: wp)
        leaf |= PTE.accessed | (write ? PTE.dirty : 0)
        if leaf != pde { leafPtr.storeBytes(of: UInt32(truncatingIfNeeded: leaf), as: UInt32.self) }
        global = pde & PTE.global != 0 && cr4 & CR4.pge != 0
        return Translation(
          gpa: base | (lin & pageMask),
          writeOK: permitsWrite(user, rw, wp) && leaf & PTE.dirty != 0,
          global: global, large: large, pageShift: 22)
      }
      if pde & PTE.accessed == 0 {
        pde |= PTE.accessed
        pdeP.storeBytes(of: UInt32(truncatingIfNeeded: pde), as: UInt32.self)
      }
      let pteA = (pde & 0xFFFF_F000) | ((lin >> 10) & 0xFFC)
      let pteP = try ptePointer(pteA)
      let pte = UInt64(pteP.loadUnaligned(as: UInt32.self))
      if pte & PTE.present == 0 { throw pageFault(lin, kind, user: user, present: false) }
      rw = rw && pte & PTE.writable != 0
      us = us && pte & PTE.user != 0
      try checkAccess(lin, kind, user: user, rw: rw, us: us, nx: false, wp: wp)
      leaf = pte | PTE.accessed | (write ? PTE.dirty : 0)
      if leaf != pte { pteP.storeBytes(of: UInt32(truncatingIfNeeded: leaf), as: UInt32.self) }
      global = pte & PTE.global != 0 && cr4 & CR4.pge != 0
      return Translation(
        gpa: (pte & 0xFFFF_F000) | (lin & 0xFFF),
        writeOK: permitsWrite(user, rw, wp) && leaf & PTE.dirty != 0, global: global, large: false)
    }

    var table: UInt64
    var level: Int  // 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT
    if efer & EFER.lma != 0 {
      table = cr3 & PTE.addressMask
      level = 4
    } else {
      // PAE: the PDPTE has no R/W, U/S or NX bits.
      let pdpteA = (cr3 & 0xFFFF_FFE0) | ((lin >> 27) & 0x18)
      let p = try ptePointer(pdpteA)
      let e = p.loadUnaligned(as: UInt64.self)
      if e & PTE.present == 0 { throw pageFault(lin, kind, user: user, present: false) }
      if e & (rsvdHigh | 0x1E6) != 0 {
        throw pageFault(lin, kind, user: user, present: true, rsvd: true)
      }
      table = e & PTE.addressMask
      level = 2
    }
    while true {
      let shift = UInt64(12 + 9 * (level - 1))
      let ea = table | ((lin >> shift) & 0x1FF) << 3
      let p = try ptePointer(ea)
      var e = p.loadUnaligned(as: UInt64.self)
      if e & PTE.present == 0 { throw pageFault(lin, kind, user: user, present: false) }
      var rsvd = e & rsvdHigh != 0 || (!nxe && e & PTE.nx != 0)
      let ps = e & PTE.pageSize != 0
      if level == 4 && ps { rsvd = true }
      if level == 3 && ps && (!has1G || e & 0x3FFF_E000 != 0) { rsvd = true }
      if level == 2 && ps && e & 0x1F_E000 != 0 { rsvd = true }  // 2 MiB page: bits 20:13
      if rsvd { throw pageFault(lin, kind, user: user, present: true, rsvd: true) }
      rw = rw && e & PTE.writable != 0
      us = us && e & PTE.user != 0
      nx = nx || (nxe && e & PTE.nx != 0)
      if level == 1 || (ps && level <= 3) {
        try checkAccess(lin, kind, user: user, rw: rw, us: us, nx: nx, wp: wp)
        leaf = e | PTE.accessed | (write ? PTE.dirty : 0)
        if leaf != e { p.storeBytes(of: leaf, as: UInt64.self) }
        pageMask = (1 << shift) - 1
        global = e & PTE.global != 0 && cr4 & CR4.pge != 0
        large = level > 1
        let base = e & PTE.addressMask & ~pageMask
        return Translation(
          gpa: base | (lin & pageMask),
          writeOK: permitsWrite(user, rw, wp) && leaf & PTE.dirty != 0,
          global: global, large: large, pageShift: shift)
      }
      if e & PTE.accessed == 0 {
        e |= PTE.accessed
        p.storeBytes(of: e, as: UInt64.self)
      }
      table = e & PTE.addressMask
      level -= 1
    }
  }

  @inline(__always) func permitsWrite(_ user: Bool, _ rw: Bool, _ wp: Bool) -> Bool {
    rw || (!user && !wp)
  }

  @inline(__always)
  func checkAccess(
    _ lin: UInt64, _ kind: AccessKind, user: Bool, rw: Bool, us: Bool, nx: Bool, wp: Bool
  ) throws(Fault) {
    if user && !us { throw pageFault(lin, kind, user: user, present: true) }
    if kind == .write && !permitsWrite(user, rw, wp) {
      throw pageFault(lin, kind, user: user, present: true)
    }
    if kind == .fetch {
      if nx { throw pageFault(lin, kind, user: user, present: true) }
      if !user && us && cr4 & CR4.smep != 0 {
        throw pageFault(lin, kind, user: user, present: true)
      }
    }
  }

  // MARK: Instruction fetch

  /// Sets up fetching for the instruction at `rip`.
  @inline(__always) func beginFetch() throws(Fault) {
    let lin = linear(CS, rip)
    ipos = 0
    let slot = Int(truncatingIfNeeded: lin >> 12) & TLB.mask
    let off = Int(lin & 0xFFF)
    if tlb.xtag[slot] == (lin & ~0xFFF) | userKey {
      fetchPtr = UnsafeMutableRawPointer(bitPattern: tlb.xadd[slot] &+ Int(bitPattern: UInt(lin)))
      fetchAvail = min(4096 &- off, 15)
      if csLimited { try checkFetchStart() }
      return
    }
    stats.fetchTLBMisses &+= 1
    let host = try fetchHost(lin)
    fetchPtr = host
    fetchAvail = min(4096 - off, 15)
    if csLimited { try checkFetchStart() }
  }

  /// Host pointer for fetching at `lin`; fetch from non-RAM stops cleanly.
  func fetchHost(_ lin: UInt64) throws(Fault) -> UnsafeMutableRawPointer {
    let gpa = try translateAccess(lin, .fetch, user: cpl == 3)
    if let p = mmuHW.physHost { return p }
    pendingExit = .internalError(
      "instruction fetch from non-RAM GPA 0x" + String(gpa, radix: 16) + " (linear 0x"
        + String(lin, radix: 16) + ", RIP 0x" + String(rip, radix: 16) + ")")
    throw Fault.exit
  }

  @inline(__always) func fetch8() throws(Fault) -> UInt8 {
    if ipos < fetchAvail {
      let b = fetchPtr.unsafelyUnwrapped.load(fromByteOffset: ipos, as: UInt8.self)
      ipos &+= 1
      return b
    }
    return try fetchSlow()
  }

  @inline(never) func fetchSlow() throws(Fault) -> UInt8 {
    if ipos >= 15 { throw Fault.gp(0) }
    var room = 15 - ipos
    if csLimited {
      // The instruction runs past CS's limit (or needs more bytes below it). The
      // offset is not wrapped: 16-bit code whose instruction crosses 0xFFFF faults.
      let off = rip &+ UInt64(ipos)
      let limit = UInt64(seg[CS].limit)
      if off > limit { throw Fault.gp(0) }
      room = Int(min(UInt64(room), limit - off + 1))
    }
    // The instruction crosses into the next page: continue in a side buffer.
    let lin = linear(CS, (rip &+ UInt64(ipos)) & codeMask)
    let host = try fetchHost(lin)
    let n = min(room, 4096 - Int(lin & 0xFFF))
    (fetchBuf + ipos).copyMemory(from: host, byteCount: n)
    fetchPtr = fetchBuf
    fetchAvail = ipos + n
    let b = fetchBuf.load(fromByteOffset: ipos, as: UInt8.self)
    ipos += 1
    return b
  }

  @inline(__always) func fetch16() throws(Fault) -> UInt64 {
    if ipos &+ 2 <= fetchAvail {
      let v = fetchPtr.unsafelyUnwrapped.loadUnaligned(fromByteOffset: ipos, as: UInt16.self)
      ipos &+= 2
      return UInt64(UInt16(littleEndian: v))
    }
    let a = UInt64(try fetch8())
    return a | UInt64(try fetch8()) << 8
  }

  @inline(__always) func fetch32() throws(Fault) -> UInt64 {
    if ipos &+ 4 <= fetchAvail {
      let v = fetchPtr.unsafelyUnwrapped.loadUnaligned(fromByteOffset: ipos, as: UInt32.self)
      ipos &+= 4
      return UInt64(UInt32(littleEndian: v))
    }
    let a = try fetch16()
    return a | (try fetch16()) << 16
  }

  @inline(__always) func fetch64() throws(Fault) -> UInt64 {
    let a = try fetch32()
    return a | (try fetch32()) << 32
  }

}
