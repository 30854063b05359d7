/// One CPUID answer: the four output registers.
public struct CPUIDResult: Equatable, Hashable, Sendable, Codable {
  public var eax: UInt32
  public var ebx: UInt32
  public var ecx: UInt32
  public var edx: UInt32
  public init(eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
    self.eax = eax
    self.ebx = ebx
    self.ecx = ecx
    self.edx = edx
  }
}

/// One entry of a CPUID table: leaf (EAX in), subleaf (ECX in) and the result.
public struct CPUIDEntry: Equatable, Sendable {
  public var function: UInt32
  public var index: UInt32
  /// True when the answer depends on ECX (subleaf).
  public var indexed: Bool
  public var result: CPUIDResult
  public init(function: UInt32, index: UInt32 = 0, indexed: Bool = false, result: CPUIDResult) {
    self.function = function
    self.index = index
    self.indexed = indexed
    self.result = result
  }
}

/// Feature bits by leaf and register, named as the SDM does.
public enum CPUIDFeature {
  // Leaf 1 EDX
  public static let fpu: UInt32 = 1 << 0
  public static let vme: UInt32 = 1 << 1
  public static let de: UInt32 = 1 << 2
  public static let pse: UInt32 = 1 << 3
  public static let tsc: UInt32 = 1 << 4
  public static let msr: UInt32 = 1 << 5
  public static let pae: UInt32 = 1 << 6
  public static let mce: UInt32 = 1 << 7
  public static let cx8: UInt32 = 1 << 8
  public static let apic: UInt32 = 1 << 9
  public static let sep: UInt32 = 1 << 11
  public static let mtrr: UInt32 = 1 << 12
  public static let pge: UInt32 = 1 << 13
  public static let mca: UInt32 = 1 << 14
  public static let cmov: UInt32 = 1 << 15
  public static let pat: UInt32 = 1 << 16
  public static let pse36: UInt32 = 1 << 17
  public static let clfsh: UInt32 = 1 << 19
  public static let mmx: UInt32 = 1 << 23
  public static let fxsr: UInt32 = 1 << 24
  public static let sse: UInt32 = 1 << 25
  public static let sse2: UInt32 = 1 << 26
  // Leaf 1 ECX
  public static let sse3: UInt32 = 1 << 0
  public static let ssse3: UInt32 = 1 << 9
  public static let cx16: UInt32 = 1 << 13
  public static let sse41: UInt32 = 1 << 19
  public static let sse42: UInt32 = 1 << 20
  public static let x2apic: UInt32 = 1 << 21
  public static let movbe: UInt32 = 1 << 22
  public static let popcnt: UInt32 = 1 << 23
  public static let tscDeadline: UInt32 = 1 << 24
  public static let xsave: UInt32 = 1 << 26
  public static let hypervisor: UInt32 = 1 << 31
  // Leaf 0x80000001 EDX
  public static let syscall: UInt32 = 1 << 11
  public static let nx: UInt32 = 1 << 20
  public static let pdpe1gb: UInt32 = 1 << 26
  public static let rdtscp: UInt32 = 1 << 27
  public static let lm: UInt32 = 1 << 29
  // Leaf 0x80000001 ECX
  public static let lahfLM: UInt32 = 1 << 0
  public static let abm: UInt32 = 1 << 5  // LZCNT
  // Leaf 7 EBX
  public static let bmi1: UInt32 = 1 << 3
  public static let bmi2: UInt32 = 1 << 8
}
