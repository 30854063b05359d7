import Engine
import Memory
import X86

// The interpreter's side of a snapshot: its whole register file as an
// engine-neutral `VCPUSnapshot`. Decoded instructions, translated blocks and the
// soft TLB are caches: they are dropped, not saved, and rebuild as the guest runs.

extension InterpreterCPU {
  public func saveVCPU() throws -> VCPUSnapshot {
    // An exit handed out but not answered yet cannot be saved; an answered one can.
    guard !pendingIn, !pendingMMIORead else {
      throw EngineError.failed("vCPU is waiting for an I/O answer; cannot save it")
    }
    var msrs: [UInt32: UInt64] = [:]
    for i in VCPUSnapshot.msrIndices {
      if let v = try? readMSR(i) { msrs[i] = v }
    }
    var s = VCPUSnapshot(
      registers: try getState(), fxsave: fxImage(), xcr0: xcr0,
      debugRegisters: [dr[0], dr[1], dr[2], dr[3], dr[6], dr[7]], msrs: msrs,
      interruptShadow: interruptShadow, nmiBlocked: nmiBlocked, halted: halted,
      instructionsRetired: instructions)
    if let v = ioValue {
      s.pendingRead = .init(mmio: false, key: UInt64(ioKey), value: v)
    }
    if !mmioCompleted.isEmpty || !queuedMMIOWrites.isEmpty {
      func saved(_ a: MMIOAccess) -> VCPUSnapshot.MMIOProgress.Access {
        .init(address: a.address.rawValue, size: a.size, isWrite: a.isWrite, value: a.value)
      }
      s.mmio = .init(done: mmioCompleted.map(saved), queuedWrites: queuedMMIOWrites.map(saved))
    }
    return s
  }

  public func restoreVCPU(_ s: VCPUSnapshot) throws {
    guard s.fxsave.count == 512, s.debugRegisters.count == 6 else {
      throw EngineError.failed("vCPU snapshot has a malformed FPU image or debug registers")
    }
    try setState(s.registers)
    // First: with no platform, the TSC MSR below is relative to this count.
    instructions = s.instructionsRetired
    setFXImage(s.fxsave)
    xcr0 = s.xcr0 | 1
    for (k, i) in [0, 1, 2, 3, 6, 7].enumerated() { dr[i] = s.debugRegisters[k] }
    debugRegistersChanged()
    // The platform's MSRs (TSC, deadline, kvm-clock) come back with its own state;
    // the rest go into this CPU's storage as WRMSR would put them.
    let owner = platform
    platform = nil
    defer { platform = owner }
    for i in VCPUSnapshot.msrIndices {
      guard let v = s.msrs[i] else { continue }
      if owner != nil && VCPUSnapshot.platformMSRs.contains(i) { continue }
      try? writeMSR(i, v)
    }
    interruptShadow = s.interruptShadow
    nmiBlocked = s.nmiBlocked
    halted = s.halted
    ioValue = nil
    mmioReplayed = 0
    func restored(_ a: VCPUSnapshot.MMIOProgress.Access) -> MMIOAccess {
      MMIOAccess(
        address: GuestPhysicalAddress(a.address), size: a.size, isWrite: a.isWrite,
        value: a.value)
    }
    mmioCompleted = s.mmio?.done.map(restored) ?? []
    queuedMMIOWrites = s.mmio?.queuedWrites.map(restored) ?? []
    if let p = s.pendingRead {
      if p.mmio {
        // Older snapshots: one completed read, its size not saved (0 matches any size).
        mmioCompleted = [
          MMIOAccess(address: GuestPhysicalAddress(p.key), size: 0, isWrite: false, value: p.value)
        ]
      } else {
        ioKey = UInt32(truncatingIfNeeded: p.key)
        ioValue = p.value
      }
    }
  }
}
