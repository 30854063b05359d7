/// A CPUID register.
public enum CPUIDRegister: String, Codable, Sendable { case eax, ebx, ecx, edx }

/// A named CPUID feature bit, named as Linux's /proc/cpuinfo names it.
public struct CPUFeature: Hashable, Sendable, CustomStringConvertible {
  public var name: String
  public var leaf: UInt32
  public var subleaf: UInt32
  public var register: CPUIDRegister
  public var bit: UInt32

  public var description: String { name }

  public static let all: [CPUFeature] = {
    func f(_ name: String, _ leaf: UInt32, _ reg: CPUIDRegister, _ bit: UInt32) -> CPUFeature {
      CPUFeature(name: name, leaf: leaf, subleaf: 0, register: reg, bit: bit)
    }
    var out: [CPUFeature] = []
    let l1edx: [(String, UInt32)] = [
      ("fpu", 0), ("vme", 1), ("de", 2), ("pse", 3), ("tsc", 4), ("msr", 5), ("pae", 6),
      ("mce", 7), ("cx8", 8), ("apic", 9), ("sep", 11), ("mtrr", 12), ("pge", 13), ("mca", 14),
      ("cmov", 15), ("pat", 16), ("pse36", 17), ("clflush", 19), ("mmx", 23), ("fxsr", 24),
      ("sse", 25), ("sse2", 26), ("ss", 27), ("ht", 28),
    ]
    let l1ecx: [(String, UInt32)] = [
      ("pni", 0), ("pclmulqdq", 1), ("monitor", 3), ("ssse3", 9), ("fma", 12), ("cx16", 13),
      ("pcid", 17), ("sse4_1", 19), ("sse4_2", 20), ("x2apic", 21), ("movbe", 22),
      ("popcnt", 23), ("tsc_deadline_timer", 24), ("aes", 25), ("xsave", 26), ("avx", 28),
      ("f16c", 29), ("rdrand", 30), ("hypervisor", 31),
    ]
    let l7ebx: [(String, UInt32)] = [
      ("fsgsbase", 0), ("bmi1", 3), ("avx2", 5), ("smep", 7), ("bmi2", 8), ("erms", 9),
      ("invpcid", 10), ("rdseed", 18), ("adx", 19), ("smap", 20), ("clflushopt", 23),
      ("sha_ni", 29),
    ]
    let e1ecx: [(String, UInt32)] = [
      ("lahf_lm", 0), ("abm", 5), ("sse4a", 6), ("prefetchw", 8), ("topoext", 22),
    ]
    let e1edx: [(String, UInt32)] = [
      ("syscall", 11), ("nx", 20), ("mmxext", 22), ("pdpe1gb", 26), ("rdtscp", 27), ("lm", 29),
    ]
    let kvm: [(String, UInt32)] = [
      ("kvmclock", 0), ("nopiodelay", 1), ("clocksource2", 3), ("async_pf", 4),
      ("steal_time", 5), ("pv_eoi", 6), ("pv_unhalt", 7), ("clocksource_stable", 24),
    ]
    out += l1edx.map { f($0.0, 1, .edx, $0.1) }
    out += l1ecx.map { f($0.0, 1, .ecx, $0.1) }
    out += l7ebx.map { f($0.0, 7, .ebx, $0.1) }
    out += e1ecx.map { f($0.0, 0x8000_0001, .ecx, $0.1) }
    out += e1edx.map { f($0.0, 0x8000_0001, .edx, $0.1) }
    out += kvm.map { f("kvm_" + $0.0, 0x4000_0001, .eax, $0.1) }
    out.append(
      CPUFeature(
        name: "constant_tsc_invariant", leaf: 0x8000_0007, subleaf: 0, register: .edx, bit: 8))
    return out
  }()

  public static func named(_ name: String) -> CPUFeature? { all.first { $0.name == name } }
}
