import Engine
import Memory
import X86

// Shadow paging, hypervisor side (after KVM's mmu.rst): shadow tables GVA -> HPA
// built from software walks of the guest's tables, guest page-table frames
// write-protected through the CPU's frame-flag map, emulated writes that zap the
// affected shadow entries, intercepted CR3 loads and INVLPG, a small cache of
// recent roots, and a cap on shadow pages.
//
// A shadow page is keyed like KVM's (gfn, role): the guest table it shadows
// (or, for "direct" pages, the guest large page it splits into 4 KiB pieces),
// its level, and the access the path above it allows. Upper shadow entries are
// permissive; a leaf entry carries the guest's effective U/S, R/W, NX. A leaf is
// writable only once the guest's D bit is set, so the first write exits and the
// VMM sets D; A is set when the leaf is filled (a fill is an access).

final class ShadowMMU {
  struct Key: Hashable {
    var gfn: UInt64
    var level: Int
    var role: UInt16
  }
  enum Role {
    static let rw: UInt16 = 1
    static let us: UInt16 = 2
    static let nx: UInt16 = 4
    static let direct: UInt16 = 8
    static let wp: UInt16 = 16
    static let nxe: UInt16 = 32
    static let nonpaging: UInt16 = 64
  }
  final class Page {
    let key: Key
    let hpa: UInt64
    var parents: [(hpa: UInt64, index: Int)] = []
    var isRoot = false
    init(key: Key, hpa: UInt64) {
      self.key = key
      self.hpa = hpa
    }
  }

  let memory: GuestMemory
  let frames: MMUFrameAllocator
  let flags: UnsafeMutablePointer<UInt8>
  let flagCount: UInt64
  let walker: GuestPageWalker
  let cap: Int
  let rootCacheSize: Int

  private var pages: [Key: Page] = [:]
  private var byHPA: [UInt64: Page] = [:]
  private var byGFN: [UInt64: [Page]] = [:]
  /// Emulated writes per protected frame since a fill last used it (write-flood detection).
  private var floods: [UInt64: Int] = [:]
  /// Most recently used first.
  private var roots: [Page] = []
  private var current: Page?

  // Counters.
  private(set) var misses: UInt64 = 0
  private(set) var fills: UInt64 = 0
  private(set) var injectedFaults: UInt64 = 0
  private(set) var emulatedWrites: UInt64 = 0
  private(set) var cr3Loads: UInt64 = 0
  private(set) var rootHits: UInt64 = 0
  private(set) var invlpgs: UInt64 = 0
  private(set) var zappedPages: UInt64 = 0
  private(set) var zapAlls: UInt64 = 0
  private(set) var floodUnprotects: UInt64 = 0
  private(set) var peakPages = 0
  var pagesInUse: Int { pages.count }

  init(
    memory: GuestMemory, frames: MMUFrameAllocator, flags: UnsafeMutablePointer<UInt8>,
    flagCount: UInt64, has1G: Bool, cap: Int, rootCacheSize: Int = 4
  ) {
    self.memory = memory
    self.frames = frames
    self.flags = flags
    self.flagCount = flagCount
    self.walker = GuestPageWalker(memory: memory, has1G: has1G)
    self.cap = max(cap, 16)
    self.rootCacheSize = rootCacheSize
  }

  // MARK: Exits

  /// A shadow miss: walk the guest, then fill the shadow path or inject the guest's #PF.
  func handleMiss(cpu: SoftwareMMUHardware, gva: UInt64, write: Bool, user: Bool, fetch: Bool)
    -> String?
  {
    misses += 1
    if pages.count + 6 > cap { zapAll(cpu: cpu) }
    let regs = cpu.pagingRegisters
    let root = activeRoot(cpu: cpu, regs: regs)
    if regs.cr0 & CR0.pg == 0 {
      // Guest paging off: the shadow maps GVA = GPA (32-bit).
      let gpa = gva & 0xFFFF_FFFF & ~0xFFF
      install(
        cpu: cpu, root: root, gva: gva, steps: [], leafLevel: 1, leaf: nil, gpa: gpa,
        access: Role.rw | Role.us, user: user, write: write)
      return nil
    }
    guard regs.efer & EFER.lma != 0 else {
      return
        "shadow: the guest uses 32-bit or PAE paging, which this shadow MMU does not shadow (only 4-level); run it with --mmu nested or direct"
    }
    switch walker.walk(gva, regs: regs, write: write, user: user, fetch: fetch) {
    case .fault(let code):
      injectedFaults += 1
      cpu.injectPageFault(address: gva, errorCode: code)
      return nil
    case .machineCheck(let why):
      return why
    case .ok(let leaf):
      var access: UInt16 = 0
      if leaf.rw { access |= Role.rw }
      if leaf.us { access |= Role.us }
      if leaf.nx { access |= Role.nx }
      install(
        cpu: cpu, root: root, gva: gva, steps: leaf.steps, leafLevel: leaf.level, leaf: leaf,
        gpa: leaf.gpa, access: access, user: user, write: write)
      return nil
    }
  }

  /// Stores the CPU held back because they hit protected guest page-table frames:
  /// perform them in guest memory, then zap the shadow entries they change.
  func handleWriteProtected(cpu: SoftwareMMUHardware) -> String? {
    for s in cpu.takeInterceptedStores() {
      emulatedWrites += 1
      var v = s.value.littleEndian
      do {
        try withUnsafeBytes(of: &v) {
          try memory.write(
            GuestPhysicalAddress(s.gpa), from: UnsafeRawBufferPointer(rebasing: $0[0..<s.size]))
        }
      } catch {
        return "shadow: emulated write to GPA 0x\(String(s.gpa, radix: 16)) failed: \(error)"
      }
      let gfn = s.gpa >> 12
      let first = Int(s.gpa & 0xFFF) / 8
      let last = Int((s.gpa & 0xFFF) + UInt64(s.size) - 1) / 8
      for p in byGFN[gfn] ?? [] {
        for i in first...min(last, 511) { unlink(p, i, cpu: cpu) }
      }
      // A frame written over and over without being walked is probably no
      // longer a page table (KVM's write-flood heuristic): stop shadowing it.
      let n = (floods[gfn] ?? 0) + 1
      floods[gfn] = n
      if n >= 32, let ps = byGFN[gfn], !ps.contains(where: { $0.isRoot }) {
        floodUnprotects += 1
        for p in ps where pages[p.key] != nil { zap(p, cpu: cpu) }
        floods[gfn] = nil
      }
    }
    return nil
  }

  /// MOV CR3 or a paging-mode change: switch to the shadow root for the new context.
  func handleCR3Load(cpu: SoftwareMMUHardware) {
    cr3Loads += 1
    _ = activeRoot(cpu: cpu, regs: cpu.pagingRegisters)
  }

  /// INVLPG: drop the shadow leaf for `gva` (the whole split if it came from a large page).
  func handleInvlpg(cpu: SoftwareMMUHardware, gva: UInt64) {
    invlpgs += 1
    guard var p = current else { return }
    for level in stride(from: 4, through: 1, by: -1) {
      let idx = index(gva, level)
      let e = frames.pointer(p.hpa + UInt64(idx * 8)).load(as: UInt64.self)
      if e & PTE.present == 0 { return }
      if level == 1 {
        unlink(p, idx, cpu: cpu)
        return
      }
      guard let child = byHPA[e & PTE.addressMask] else { return }
      if child.key.role & Role.direct != 0 {
        unlink(p, idx, cpu: cpu)
        return
      }
      p = child
    }
  }

  // MARK: Roots

  private func rootKey(_ regs: PagingRegisters) -> Key {
    var role: UInt16 = Role.rw | Role.us
    if regs.cr0 & CR0.wp != 0 { role |= Role.wp }
    if regs.efer & EFER.nxe != 0 { role |= Role.nxe }
    if regs.cr0 & CR0.pg == 0 { return Key(gfn: ~0, level: 4, role: role | Role.nonpaging) }
    return Key(gfn: (regs.cr3 & PTE.addressMask) >> 12, level: 4, role: role)
  }

  /// The root for the guest's current context, from the cache or new; installed in the CPU.
  @discardableResult
  private func activeRoot(cpu: SoftwareMMUHardware, regs: PagingRegisters) -> Page {
    let key = rootKey(regs)
    if let c = current, c.key == key, pages[key] != nil {
      cpu.setShadowRoot(c.hpa)
      return c
    }
    let root: Page
    if let i = roots.firstIndex(where: { $0.key == key }) {
      rootHits += 1
      root = roots.remove(at: i)
    } else {
      root = page(key, cpu: cpu)
      root.isRoot = true
    }
    roots.insert(root, at: 0)
    while roots.count > rootCacheSize {
      let old = roots.removeLast()
      old.isRoot = false
      if old.parents.isEmpty { zap(old, cpu: cpu) }
    }
    current = root
    cpu.setShadowRoot(root.hpa)
    return root
  }

  // MARK: Filling

  @inline(__always) private func index(_ gva: UInt64, _ level: Int) -> Int {
    Int((gva >> UInt64(12 + 9 * (level - 1))) & 0x1FF)
  }

  private func install(
    cpu: SoftwareMMUHardware, root: Page, gva: UInt64, steps: [GuestPageWalker.Step],
    leafLevel: Int,
    leaf: GuestPageWalker.Leaf?, gpa: UInt64, access: UInt16, user: Bool, write: Bool
  ) {
    fills += 1
    let envRole = root.key.role & (Role.wp | Role.nxe | Role.nonpaging)
    var sp = root
    var acc: UInt16 = Role.rw | Role.us
    for level in stride(from: 4, to: 1, by: -1) {
      let childKey: Key
      if level > leafLevel, let step = steps.first(where: { $0.level == level }) {
        // Access allowed by the path down to and including this entry.
        let e = step.value
        if e & PTE.writable == 0 { acc &= ~Role.rw }
        if e & PTE.user == 0 { acc &= ~Role.us }
        if envRole & Role.nxe != 0 && e & PTE.nx != 0 { acc |= Role.nx }
        let gfn = (e & PTE.addressMask) >> 12
        childKey = Key(gfn: gfn, level: level - 1, role: acc | envRole)
        floods[gfn] = nil
      } else {
        // Below a guest large page (or with paging off): direct pages split it in 4 KiB pieces.
        let span = UInt64(1) << UInt64(12 + 9 * (level - 1))
        let base = (gpa & ~(span - 1)) >> 12
        childKey = Key(gfn: base, level: level - 1, role: access | envRole | Role.direct)
      }
      let idx = index(gva, level)
      let slot = frames.pointer(sp.hpa + UInt64(idx * 8))
      let e = slot.load(as: UInt64.self)
      if e & PTE.present != 0, let c = byHPA[e & PTE.addressMask], c.key == childKey {
        sp = c
        continue
      }
      if e & PTE.present != 0 { unlink(sp, idx, cpu: cpu) }
      let child = page(childKey, cpu: cpu)
      child.parents.append((sp.hpa, idx))
      slot.storeBytes(of: child.hpa | PTE.present | PTE.writable | PTE.user, as: UInt64.self)
      sp = child
    }
    // Leaf: effective permissions; writable only with the guest's D bit set.
    var spte: UInt64 = PTE.present
    let rw = access & Role.rw != 0
    let us = access & Role.us != 0
    let dirty = leaf?.dirty ?? true
    if rw {
      if dirty { spte |= PTE.writable }
      if us { spte |= PTE.user }
    } else if envRole & Role.wp == 0 && !user {
      // CR0.WP = 0: the supervisor may write a read-only page. Like KVM, make the
      // entry writable but supervisor-only; a user access misses and refills it.
      if dirty && write { spte |= PTE.writable } else if us { spte |= PTE.user }
    } else if us {
      spte |= PTE.user
    }
    if access & Role.nx != 0 { spte |= PTE.nx }
    if let leaf, leaf.global { spte |= PTE.global }
    if let hpa = memory.hostPhysical(GuestPhysicalAddress(gpa)) {
      spte |= hpa.rawValue & PTE.addressMask
    } else {
      spte |= (gpa & PTE.addressMask) | ShadowEntry.mmio
    }
    let slot = frames.pointer(sp.hpa + UInt64(index(gva, 1) * 8))
    slot.storeBytes(of: spte, as: UInt64.self)
  }

  /// Finds or creates a shadow page; a new non-direct page write-protects its guest frame.
  private func page(_ key: Key, cpu: SoftwareMMUHardware) -> Page {
    if let p = pages[key] { return p }
    // The allocator can only fail when the pool is exhausted; the cap keeps us below that.
    let hpa =
      (try? frames.allocate())
      ?? {
        zapAll(cpu: cpu); return try! frames.allocate()
      }()
    let p = Page(key: key, hpa: hpa)
    pages[key] = p
    byHPA[hpa] = p
    peakPages = max(peakPages, pages.count)
    if key.role & (Role.direct | Role.nonpaging) == 0 {
      byGFN[key.gfn, default: []].append(p)
      if key.gfn < flagCount && flags[Int(key.gfn)] & GuestFrameFlag.writeProtected == 0 {
        flags[Int(key.gfn)] |= GuestFrameFlag.writeProtected
        // The CPU may still cache a writable translation of this frame.
        cpu.flushTranslations(includingGlobal: true)
      }
    }
    return p
  }

  // MARK: Zapping

  /// Clears entry `i` of `p`; a child left without parents (and not a cached root) is freed.
  private func unlink(_ p: Page, _ i: Int, cpu: SoftwareMMUHardware) {
    let slot = frames.pointer(p.hpa + UInt64(i * 8))
    let e = slot.load(as: UInt64.self)
    guard e & PTE.present != 0 else { return }
    slot.storeBytes(of: 0, as: UInt64.self)
    if p.key.level > 1, let c = byHPA[e & PTE.addressMask] {
      c.parents.removeAll { $0.hpa == p.hpa && $0.index == i }
      if c.parents.isEmpty && !c.isRoot { zap(c, cpu: cpu) }
    }
  }

  private func zap(_ p: Page, cpu: SoftwareMMUHardware) {
    guard pages[p.key] === p else { return }
    zappedPages += 1
    pages[p.key] = nil
    byHPA[p.hpa] = nil
    for link in p.parents {
      frames.pointer(link.hpa + UInt64(link.index * 8)).storeBytes(of: 0, as: UInt64.self)
    }
    p.parents.removeAll()
    if p.key.level > 1 {
      for i in 0..<512 { unlink(p, i, cpu: cpu) }
    }
    if p.key.role & (Role.direct | Role.nonpaging) == 0 {
      byGFN[p.key.gfn]?.removeAll { $0 === p }
      if byGFN[p.key.gfn]?.isEmpty ?? false {
        byGFN[p.key.gfn] = nil
        if p.key.gfn < flagCount { flags[Int(p.key.gfn)] &= ~GuestFrameFlag.writeProtected }
      }
    }
    if let i = roots.firstIndex(where: { $0 === p }) { roots.remove(at: i) }
    if current === p {
      current = nil
      cpu.setShadowRoot(0)
    }
    frames.release(p.hpa)
  }

  /// The cap was reached: drop every shadow page (the next accesses rebuild what is live).
  func zapAll(cpu: SoftwareMMUHardware) {
    zapAlls += 1
    for p in Array(pages.values) { zap(p, cpu: cpu) }
    roots.removeAll()
    current = nil
    cpu.setShadowRoot(0)
  }

  // MARK: Inspection

  /// Shadow entries on the way to `gva` in the current root: (level, HPA of entry, value).
  func chain(_ gva: UInt64) -> [(level: Int, at: UInt64, value: UInt64)] {
    guard let c = current else { return [] }
    var out: [(Int, UInt64, UInt64)] = []
    var t = c.hpa
    for level in stride(from: 4, through: 1, by: -1) {
      let at = t + UInt64(index(gva, level) * 8)
      let e = frames.pointer(at).load(as: UInt64.self)
      out.append((level, at, e))
      if e & PTE.present == 0 { break }
      t = e & PTE.addressMask
    }
    return out
  }
}
