import X86

extension CPUIDResult {
  /// The fields of a CPUID leaf that differ from CPU to CPU, set for the CPU with
  /// `apicID`: leaf 1 EBX[31:24] (initial APIC ID), leaf 0xB EDX (x2APIC ID), leaf
  /// 0x8000001E EAX (extended APIC ID) and EBX[7:0] (core ID: one core per APIC ID).
  /// One definition for every engine.
  public func forCPU(leaf: UInt32, apicID: UInt32) -> CPUIDResult {
    var r = self
    switch leaf {
    case 1: r.ebx = r.ebx & 0x00FF_FFFF | (apicID & 0xFF) << 24
    case 0xB: r.edx = apicID
    case 0x8000_001E:
      r.eax = apicID
      r.ebx = r.ebx & ~0xFF | (apicID & 0xFF)
    default: break
    }
    return r
  }
}
