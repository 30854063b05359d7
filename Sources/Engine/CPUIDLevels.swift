/// The x86-64 microarchitecture levels of the psABI (x86-64-v1..v3), which
/// glibc and distributions use to select code: each level is the previous one
/// plus a set of CPUID features (Linux /proc/cpuinfo names).
public enum X86Level {
  /// Features each level adds, in order v1, v2, v3.
  public static let requirements: [[String]] = [
    ["fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "syscall", "lm"],
    ["cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2"],
    ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"],
  ]

  /// The highest level `policy` reaches (0: not even v1), and the features
  /// the next level still lacks.
  public static func of(_ policy: CPUIDPolicy) -> (level: Int, missingForNext: [String]) {
    let on = Set(policy.enabledFeatures.map(\.name))
    for (i, req) in requirements.enumerated() {
      let missing = req.filter { !on.contains($0) }
      if !missing.isEmpty { return (i, missing) }
    }
    return (requirements.count, [])
  }

  /// "x86-64-v2 (v3 needs: avx avx2 ...)" for `swiftvmm cpuid`.
  public static func describe(_ policy: CPUIDPolicy) -> String {
    let (level, missing) = of(policy)
    let name = level == 0 ? "below x86-64-v1" : "x86-64-v\(level)"
    if missing.isEmpty { return name }
    return name + " (v\(level + 1) needs: \(missing.joined(separator: " ")))"
  }
}
