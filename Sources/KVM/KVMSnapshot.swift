import CKVM
import Engine
import X86

// KVM's side of a snapshot: registers, FPU/SSE (KVM_GET_FPU), the MSRs KVM knows,
// and the event state (an interrupt KVM_INTERRUPT queued is in it), as an
// engine-neutral `VCPUSnapshot`. The interrupt controllers and timers are the
// VMM's platform on every engine and saved with it; DR0-7 and XCR0 are kept at
// their reset values.

extension KVMVirtualCPU {
  public func saveVCPU() throws -> VCPUSnapshot {
    guard pending == .none, ioNext >= io.count || io.count <= 1 else {
      throw EngineError.failed("vCPU is in the middle of an I/O instruction; cannot save it")
    }
    // A completed IN or MMIO read is only in the run page until the next KVM_RUN:
    // enter with immediate_exit so KVM finishes that instruction and returns (EINTR).
    ckvm_run_set_immediate_exit(runPage, 1)
    _ = ckvm_run(fd)
    ckvm_run_set_immediate_exit(runPage, 0)
    var image = [UInt8](repeating: 0, count: 512)
    let r = ckvm_get_fpu(fd, &image)
    guard r >= 0 else { throw kvmFailure("KVM_GET_FPU", r) }
    var events = ckvm_events()
    let e = ckvm_get_events(fd, &events)
    guard e >= 0 else { throw kvmFailure("KVM_GET_VCPU_EVENTS", e) }
    // One at a time: KVM_GET_MSRS stops at the first MSR it does not know.
    var msrs: [UInt32: UInt64] = [:]
    for i in VCPUSnapshot.msrIndices {
      if let v = try? readMSRs([i]) { msrs[i] = v[0] }
    }
    return VCPUSnapshot(
      registers: try getState(), fxsave: image, debugRegisters: [0, 0, 0, 0, 0xFFFF_0FF0, 0x400],
      msrs: msrs, interruptShadow: events.interrupt_shadow != 0,
      nmiBlocked: events.nmi_masked != 0)
  }

  public func restoreVCPU(_ s: VCPUSnapshot) throws {
    guard s.fxsave.count == 512 else {
      throw EngineError.failed("vCPU snapshot has a malformed FPU image")
    }
    guard s.pendingRead == nil, s.mmio == nil else {
      throw EngineError.unsupported(
        "the vCPU was saved in the middle of an I/O instruction, which KVM cannot resume")
    }
    try setState(s.registers)
    let r = ckvm_set_fpu(fd, s.fxsave)
    guard r >= 0 else { throw kvmFailure("KVM_SET_FPU", r) }
    var events = ckvm_events(
      interrupt_shadow: s.interruptShadow ? 1 : 0, nmi_masked: s.nmiBlocked ? 1 : 0,
      nmi_pending: 0)
    let e = ckvm_set_events(fd, &events)
    guard e >= 0 else { throw kvmFailure("KVM_SET_VCPU_EVENTS", e) }
    // MSRs KVM does not implement (kvm-clock under PVM, say) are skipped one by one.
    for i in VCPUSnapshot.msrIndices {
      guard let v = s.msrs[i] else { continue }
      try? writeMSRs([(index: i, value: v)])
    }
  }
}
