import X86

/// The CPUID answers a guest sees: one policy, applied by every engine.
///
/// The interpreter answers CPUID from `lookup`; the KVM engine turns `table`
/// into its KVM_SET_CPUID2 list. Both see the same leaves.
public struct CPUIDPolicy: Equatable, Sendable {
  public var entries: [CPUIDEntry]

  public init(entries: [CPUIDEntry]) { self.entries = entries }

  /// The answer for leaf/subleaf, following the architectural rule that a
  /// basic leaf above the maximum returns the maximum basic leaf's data.
  public func lookup(leaf: UInt32, subleaf: UInt32) -> CPUIDResult {
    if let e = find(leaf, subleaf) { return e }
    let basicMax = find(0, 0)?.eax ?? 0
    let extMax = find(0x8000_0000, 0)?.eax ?? 0
    let isBasic = leaf < 0x4000_0000
    let isExt = leaf >= 0x8000_0000
    if (isBasic && leaf > basicMax) || (isExt && leaf > extMax) {
      return find(basicMax, 0) ?? CPUIDResult()
    }
    return CPUIDResult()
  }

  private func find(_ leaf: UInt32, _ subleaf: UInt32) -> CPUIDResult? {
    for e in entries where e.function == leaf && (!e.indexed || e.index == subleaf) {
      return e.result
    }
    return nil
  }

  /// Packs a 12-byte vendor string the way leaf 0 returns it: EBX, EDX, ECX.
  public static func registers(fromVendor s: String) -> (ebx: UInt32, ecx: UInt32, edx: UInt32) {
    let r = registers(fromSignature: s)
    return (r.ebx, r.edx, r.ecx)
  }

  /// Packs a 12-byte signature the way hypervisor leaves return it: EBX, ECX, EDX.
  public static func registers(fromSignature s: String) -> (ebx: UInt32, ecx: UInt32, edx: UInt32) {
    var b = Array(s.utf8.prefix(12))
    while b.count < 12 { b.append(0) }
    func word(_ i: Int) -> UInt32 {
      UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
    return (word(0), word(4), word(8))
  }

  /// Packs a brand string into leaves 0x80000002..4.
  public static func brandLeaves(_ brand: String) -> [CPUIDEntry] {
    var b = Array(brand.utf8.prefix(47))
    while b.count < 48 { b.append(0) }
    func word(_ i: Int) -> UInt32 {
      UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
    return (0..<3).map { leaf in
      let o = leaf * 16
      return CPUIDEntry(
        function: 0x8000_0002 + UInt32(leaf),
        result: CPUIDResult(eax: word(o), ebx: word(o + 4), ecx: word(o + 8), edx: word(o + 12)))
    }
  }

  /// SwiftVMM's default: an x86-64-v2 CPU (see CPUIDLevels.swift), the hypervisor
  /// bit and our own hypervisor leaves. The VMM masks it to what the engine
  /// implements (`InterpreterCPU.implementedFeatures`, or KVM's supported list).
  public static var `default`: CPUIDPolicy {
    // AMD like the host and QEMU's default model: Linux then skips the Intel-only
    // speculation workarounds (page-table isolation) that would slow the interpreter.
    let vendor = registers(fromVendor: "AuthenticAMD")
    let hv = registers(fromSignature: "SwiftVMM")
    let f = CPUIDFeature.self
    let leaf1edx =
      f.fpu | f.de | f.pse | f.tsc | f.msr | f.pae | f.cx8 | f.apic | f.sep | f.mtrr | f.pge
      | f.cmov | f.pat | f.clfsh | f.mmx | f.fxsr | f.sse | f.sse2
    let leaf1ecx =
      f.sse3 | f.ssse3 | f.cx16 | f.sse41 | f.sse42 | f.movbe | f.popcnt | f.hypervisor
    var e: [CPUIDEntry] = [
      CPUIDEntry(
        function: 0,
        result: CPUIDResult(eax: 0xD, ebx: vendor.ebx, ecx: vendor.ecx, edx: vendor.edx)),
      // family 15, model 107, stepping 1 (as QEMU's qemu64); CLFLUSH line 8 (x8 = 64 bytes), 1 logical CPU.
      CPUIDEntry(
        function: 1,
        result: CPUIDResult(eax: 0x0006_0FB1, ebx: 0x0001_0800, ecx: leaf1ecx, edx: leaf1edx)),
      CPUIDEntry(
        function: 7, index: 0, indexed: true, result: CPUIDResult(ebx: f.bmi1 | f.bmi2)),
      CPUIDEntry(function: 0xD, index: 0, indexed: true, result: CPUIDResult()),
      CPUIDEntry(
        function: 0x4000_0000,
        result: CPUIDResult(eax: 0x4000_0001, ebx: hv.ebx, ecx: hv.ecx, edx: hv.edx)),
      CPUIDEntry(function: 0x4000_0001, result: CPUIDResult()),
      CPUIDEntry(function: 0x8000_0000, result: CPUIDResult(eax: 0x8000_0008)),
      CPUIDEntry(
        function: 0x8000_0001,
        result: CPUIDResult(ecx: f.lahfLM | f.abm, edx: f.syscall | f.nx | f.lm | f.rdtscp)),
      // 40 physical, 48 virtual address bits.
      CPUIDEntry(function: 0x8000_0008, result: CPUIDResult(eax: 0x3028)),
    ]
    e += brandLeaves("SwiftVMM Virtual CPU")
    var p = CPUIDPolicy(entries: e)
    p.setCacheLeaves()
    return p
  }
}
