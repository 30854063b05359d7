import Engine
import Foundation

extension CPUIDPolicy {
  /// QEMU's `-cpu` argument for a CPU that answers CPUID like this policy: vendor, signature,
  /// leaf limits, brand and every named feature, on QEMU's featureless `base` model. So a
  /// guest takes the same code paths under QEMU as under SwiftVMM (`bench`, comparisons).
  /// Paravirtual KVM leaves are left out: TCG has none.
  public var qemuCPUModel: String {
    let l1 = lookup(leaf: 1, subleaf: 0).eax
    let baseFamily = (l1 >> 8) & 0xF
    let family = baseFamily == 0xF ? baseFamily + ((l1 >> 20) & 0xFF) : baseFamily
    let extModel = baseFamily == 0x6 || baseFamily == 0xF ? (l1 >> 16) & 0xF : 0
    let model = (l1 >> 4) & 0xF | extModel << 4
    var parts = [
      "base", "vendor=\(vendor)", "family=\(family)", "model=\(model)", "stepping=\(l1 & 0xF)",
      "level=\(lookup(leaf: 0, subleaf: 0).eax)",
      "xlevel=\(lookup(leaf: 0x8000_0000, subleaf: 0).eax)",
    ]
    let brand = (0..<3).flatMap { i -> [UInt32] in
      let r = lookup(leaf: 0x8000_0002 + UInt32(i), subleaf: 0)
      return [r.eax, r.ebx, r.ecx, r.edx]
    }
    let brandString = CPUIDPolicy.string(words: brand)
    // QEMU splits -cpu on commas; a brand containing one cannot be passed.
    if !brandString.isEmpty && !brandString.contains(",") {
      parts.append("model-id=\(brandString)")
    }
    for f in enabledFeatures where !f.name.hasPrefix("kvm_") {
      parts.append("+" + Self.qemuFeatureName(f.name))
    }
    return parts.joined(separator: ",")
  }

  /// QEMU's spelling of a feature named as Linux's /proc/cpuinfo names it.
  static func qemuFeatureName(_ name: String) -> String {
    switch name {
    case "sse4_1": return "sse4.1"
    case "sse4_2": return "sse4.2"
    case "constant_tsc_invariant": return "invtsc"
    case "prefetchw": return "3dnowprefetch"
    case "tsc_deadline_timer": return "tsc-deadline"
    default: return name.replacingOccurrences(of: "_", with: "-")
    }
  }
}
