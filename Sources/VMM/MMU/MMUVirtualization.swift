import Engine
import Memory
import X86

@_exported import enum Engine.MMUMode

/// The VMM's memory-virtualization policy for one interpreter vCPU: it owns the
/// nested table, the shadow MMU or the PV MMU, and answers their exits. The CPU
/// (the "hardware") only walks what this programs into it.
public final class MMUVirtualization: SoftwareMMUHooks {
  public let mode: MMUMode
  let cpu: SoftwareMMUHardware
  let memory: GuestMemory
  let frames: MMUFrameAllocator
  let flags: UnsafeMutablePointer<UInt8>
  let flagCount: UInt64
  let m2p: UnsafeMutablePointer<UInt32>?
  let nested: NestedPageTable?
  let shadow: ShadowMMU?
  let pv: PVMMU?
  let has1G: Bool

  private var nestedFaults: UInt64 = 0
  private var mmioMapped: UInt64 = 0
  private var shadowMisses: UInt64 = 0
  private var wpExits: UInt64 = 0
  private var cr3Exits: UInt64 = 0
  private var invlpgExits: UInt64 = 0
  private var hypercalls: UInt64 = 0

  /// Extra host frames a VM in `mode` needs beyond its RAM (nested tables or the shadow cap).
  public static func extraFrames(mode: MMUMode, memorySize: UInt64, shadowCap: Int) -> UInt64 {
    switch mode {
    case .direct, .paravirt: return 0
    case .nested: return memorySize / (2 << 20) + 64  // one PT per 2 MiB plus upper levels
    case .shadow: return UInt64(shadowCap) + 64
    }
  }

  init(
    cpu: SoftwareMMUHardware, memory: GuestMemory, has1G: Bool, shadowCap: Int,
    nestedWalkCache: Bool
  )
    throws
  {
    self.mode = cpu.mmuMode
    self.cpu = cpu
    self.memory = memory
    self.has1G = has1G
    frames = MMUFrameAllocator(pool: memory.pool)
    let top = memory.regions.map { $0.end }.max() ?? 0
    flagCount = top >> 12
    flags = .allocate(capacity: Int(flagCount))
    flags.initialize(repeating: 0, count: Int(flagCount))
    cpu.attachFrameFlags(flags, count: flagCount)
    if mode == .shadow {
      // Host frame -> guest frame + 1: lets the CPU name the GPA of a held-back store.
      let n = memory.pool.frameCount
      let m = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
      m.initialize(repeating: 0, count: n)
      for r in memory.regions {
        var g = r.start.rawValue
        while g < r.end {
          if let h = memory.hostPhysical(GuestPhysicalAddress(g)) {
            m[Int(h.frameNumber)] = UInt32(g >> 12) + 1
          }
          g += 4096
        }
      }
      cpu.attachM2P(m, count: UInt64(n))
      m2p = m
    } else {
      m2p = nil
    }
    switch mode {
    case .direct:
      nested = nil
      shadow = nil
      pv = nil
    case .nested:
      let n = try NestedPageTable(memory: memory, frames: frames)
      cpu.setNestedRoot(n.root)
      cpu.setNestedWalkCache(nestedWalkCache)
      nested = n
      shadow = nil
      pv = nil
    case .shadow:
      nested = nil
      shadow = ShadowMMU(
        memory: memory, frames: frames, flags: flags, flagCount: flagCount, has1G: has1G,
        cap: shadowCap)
      pv = nil
    case .paravirt:
      nested = nil
      shadow = nil
      pv = PVMMU(memory: memory, flags: flags, flagCount: flagCount, has1G: has1G)
    }
    cpu.mmuHooks = self
  }

  deinit {
    flags.deallocate()
    m2p?.deallocate()
  }

  /// Paravirt mode: claims the PV MMU's hypercall numbers in the VMM's table.
  func registerHypercalls(in table: HypercallTable) throws {
    guard let pv else { return }
    for nr in PVMMU.HC.all {
      try table.register(nr, owner: "paravirt MMU") { [unowned self] nr, args in
        hypercalls += 1
        return pv.handleHypercall(cpu: cpu, number: nr, args: args)
      }
    }
  }

  /// VMM-side counters.
  public func statistics() -> [String: UInt64] {
    var d: [String: UInt64] = [
      "mmu.exits.nested_faults": nestedFaults,
      "mmu.exits.shadow_misses": shadowMisses,
      "mmu.exits.write_protect": wpExits,
      "mmu.exits.cr3_loads": cr3Exits,
      "mmu.exits.invlpg": invlpgExits,
      "mmu.exits.hypercalls": hypercalls,
      "mmu.host_frames_used": UInt64(memory.pool.framesUsed),
      "mmu.vmm_table_frames": UInt64(frames.inUse),
      "mmu.vmm_table_frames_peak": UInt64(frames.peak),
    ]
    if let nested {
      d["mmu.nested.mmio_pages"] = UInt64(nested.mmioPages)
      d["mmu.nested.mapped_pages"] = UInt64(nested.mappedPages)
      d["mmu.nested.table_frames"] = UInt64(nested.tableFrames)
    }
    if let s = shadow {
      d["mmu.shadow.pages"] = UInt64(s.pagesInUse)
      d["mmu.shadow.pages_peak"] = UInt64(s.peakPages)
      d["mmu.shadow.fills"] = s.fills
      d["mmu.shadow.injected_pf"] = s.injectedFaults
      d["mmu.shadow.emulated_writes"] = s.emulatedWrites
      d["mmu.shadow.root_cache_hits"] = s.rootHits
      d["mmu.shadow.zapped_pages"] = s.zappedPages
      d["mmu.shadow.zap_all"] = s.zapAlls
      d["mmu.shadow.flood_unprotects"] = s.floodUnprotects
    }
    if let pv {
      d["mmu.pv.hypercalls"] = pv.hypercalls
      d["mmu.pv.updates"] = pv.updates
      d["mmu.pv.rejected"] = pv.rejected
      d["mmu.pv.pinned"] = UInt64(pv.pinnedCount)
    }
    return d
  }

  /// The whole chain for `gva` right now: guest CR3, guest entries, GPA, nested or shadow entries, HPA.
  public func translate(_ gva: UInt64) -> String {
    func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
    let regs = cpu.pagingRegisters
    var out = ["translate \(hex(gva)) (mode \(mode.name))", "  guest CR3 = \(hex(regs.cr3))"]
    var gpa: UInt64?
    if regs.cr0 & CR0.pg == 0 {
      out.append("  guest paging off: GPA = GVA")
      gpa = gva & 0xFFFF_FFFF
    } else {
      let walker = GuestPageWalker(memory: memory, has1G: has1G)
      let names = [4: "PML4E", 3: "PDPTE", 2: "PDE", 1: "PTE"]
      if regs.cr4 & CR4.pae == 0 {
        out.append("  guest uses 32-bit paging (4-byte entries)")
      } else if regs.efer & EFER.lma == 0 {
        out.append("  guest uses PAE paging")
      }
      func steps(_ s: [GuestPageWalker.Step]) {
        for st in s {
          var line = "  guest \(names[st.level]!) at GPA \(hex(st.entryGPA)) = \(hex(st.value))"
          if let h = memory.hostPhysical(GuestPhysicalAddress(st.entryGPA)) {
            line += " (HPA \(hex(h.rawValue)))"
          }
          out.append(line)
        }
      }
      switch walker.walk(gva, regs: regs, write: false, user: false, fetch: false, update: false) {
      case .ok(let leaf):
        steps(leaf.steps)
        gpa = leaf.gpa | (gva & 0xFFF)
      case .fault(let code):
        out.append("  guest walk faults: #PF error code \(hex(UInt64(code)))")
      case .machineCheck(let why):
        out.append("  guest walk stops: \(why)")
      }
    }
    if let gpa {
      out.append("  GPA = \(hex(gpa))")
      if let nested {
        for e in nested.chain(gpa) {
          out.append("  nested L\(e.level) entry at HPA \(hex(e.at)) = \(hex(e.value))")
        }
      }
    }
    if let shadow {
      out.append("  shadow root HPA = \(hex(cpu.shadowRoot))")
      for e in shadow.chain(gva) {
        out.append("  shadow L\(e.level) entry at HPA \(hex(e.at)) = \(hex(e.value))")
      }
    }
    if let gpa {
      if let h = memory.hostPhysical(GuestPhysicalAddress(gpa)) {
        out.append("  HPA = \(hex(h.rawValue))")
      } else {
        out.append("  not RAM (MMIO or nothing)")
      }
    }
    return out.joined(separator: "\n")
  }
}

extension Machine {
  /// Guest RAM: contiguous for direct/paravirt and KVM (memory slots), scattered in
  /// the pool for nested and shadow so that GPA != HPA everywhere, with room for the VMM's tables.
  static func makeMemory(_ config: MachineConfig) throws -> GuestMemory {
    let mode = config.engine.interpretsInstructions ? (config.mmuMode ?? .direct) : .direct
    guard mode == .nested || mode == .shadow else {
      return try GuestMemory(size: config.memorySize, layout: .contiguous)
    }
    guard config.memorySize >= 1 << 20, config.memorySize % 4096 == 0 else {
      return try GuestMemory(size: config.memorySize, layout: .contiguous)  // reports the error
    }
    let extra = MMUVirtualization.extraFrames(
      mode: mode, memorySize: config.memorySize, shadowCap: config.effectiveShadowPageCap)
    let pool = try HostFramePool(bytes: config.memorySize + extra * 4096)
    return try GuestMemory(
      pool: pool, regions: GuestMemory.pcRegions(size: config.memorySize),
      layout: .scattered(seed: config.frameSeed))
  }

  /// `--translate`: the chain for a guest-virtual address at this moment.
  public func translate(_ gva: UInt64) -> String {
    mmu?.translate(gva) ?? "translate: only the interpreter engine has an MMU model to show"
  }
}

// MARK: The CPU's MMU events

extension MMUVirtualization {
  public func nestedPageFault(gpa: UInt64, write: Bool, fetch: Bool) -> String? {
    nestedFaults += 1
    guard let nested else {
      return "nested page fault at GPA 0x\(String(gpa, radix: 16)) outside nested mode"
    }
    do {
      switch try nested.handleFault(gpa: gpa, write: write, fetch: fetch) {
      case .mapped: return nil
      case .mmio:
        mmioMapped += 1
        return nil
      case .refused(let why): return why
      }
    } catch {
      return "nested: cannot allocate a nested table: \(error)"
    }
  }

  public func shadowMiss(gva: UInt64, write: Bool, user: Bool, fetch: Bool) -> String? {
    shadowMisses += 1
    guard let shadow else { return "shadow miss outside shadow mode" }
    return shadow.handleMiss(cpu: cpu, gva: gva, write: write, user: user, fetch: fetch)
  }

  public func protectedWrite(gva: UInt64, gpa: UInt64, size: Int, value: UInt64) -> String? {
    wpExits += 1
    guard let shadow else { return "write-protect exit outside shadow mode" }
    return shadow.handleWriteProtected(cpu: cpu)
  }

  public func cr3Loaded(_ cr3: UInt64) -> String? {
    cr3Exits += 1
    if let shadow { shadow.handleCR3Load(cpu: cpu) }
    if let pv { return pv.handleCR3Load(cpu: cpu) }
    return nil
  }

  public func invalidatedPage(_ gva: UInt64) {
    invlpgExits += 1
    shadow?.handleInvlpg(cpu: cpu, gva: gva)
  }
}
