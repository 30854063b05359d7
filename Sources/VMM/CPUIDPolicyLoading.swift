import Engine
import Foundation
import KVM

extension CPUIDPolicy {
  /// A named policy (`default`, `kvm`, `minimal`) or a JSON policy file.
  public static func load(nameOrPath: String) throws -> CPUIDPolicy {
    if CPUIDPolicy.namedPolicies.contains(nameOrPath) || nameOrPath == "swiftvmm" {
      return try CPUIDPolicy.named(nameOrPath)
    }
    guard FileManager.default.fileExists(atPath: nameOrPath) else {
      throw CPUIDPolicyError.unreadable(
        "'\(nameOrPath)' is neither a CPUID policy name (\(namedPolicies.joined(separator: ", "))) nor an existing file"
      )
    }
    guard let data = FileManager.default.contents(atPath: nameOrPath) else {
      throw CPUIDPolicyError.unreadable("cannot read CPUID policy file '\(nameOrPath)'")
    }
    do {
      return try JSONDecoder().decode(CPUIDPolicySpec.self, from: data).build()
    } catch let e as CPUIDPolicyError {
      throw e
    } catch {
      throw CPUIDPolicyError.unreadable("CPUID policy file '\(nameOrPath)' is not valid: \(error)")
    }
  }
}

/// The CPU features each engine can really provide, for policy validation.
public enum EngineFeatures {
  public static func implemented(by engine: EngineKind) -> Set<String> {
    switch engine {
    case .interpreter, .translator:
      return interpreterFeatures
    case .kvm:
      let host = KVMHost.probe()
      let supported = CPUIDPolicy(entries: host.supportedCPUID)
      var names = Set(CPUFeature.all.filter { supported.has($0) }.map(\.name))
      // The hypervisor bit and leaves are the VMM's to define.
      names.insert("hypervisor")
      return names
    }
  }

  /// What the interpreter executes. Keep in step with Sources/Interpreter.
  static let interpreterFeatures: Set<String> = [
    "fpu", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge", "mca",
    "cmov", "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2", "cx16", "hypervisor",
    "syscall", "nx", "lm", "lahf_lm", "rdtscp", "pdpe1gb", "tsc_deadline_timer",
    "kvm_kvmclock", "kvm_clocksource2", "kvm_nopiodelay", "kvm_clocksource_stable",
  ]
}
