extension InterpreterCPU {
  /// The CPUID features (Linux /proc/cpuinfo names) this interpreter executes.
  /// The VMM masks policies to this set; each instruction set here has forms in
  /// the differential tester (Sources/DiffTest).
  public static let implementedFeatures: Set<String> = [
    // Leaf 1 EDX.
    "fpu", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge", "mca",
    "cmov", "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2",
    // Leaf 1 ECX: x86-64-v2 (SSE3.swift, SSSE3.swift, SSE4.swift; POPCNT and CMPXCHG16B in TwoByte.swift).
    "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "tsc_deadline_timer", "hypervisor",
    // x86-64-v3 general-purpose pieces (VEX.swift; MOVBE in ThreeByte.swift; LZCNT, TZCNT in TwoByte.swift).
    "movbe", "bmi1", "bmi2", "abm",
    // Extended leaves.
    "syscall", "nx", "lm", "lahf_lm", "rdtscp", "pdpe1gb",
    // AMD topology leaves 0x8000001D/E (CPUIDCacheLeaves.swift): data, no instructions.
    "topoext",
    // Paravirtual clock.
    "kvm_kvmclock", "kvm_clocksource2", "kvm_nopiodelay", "kvm_clocksource_stable",
  ]
}
