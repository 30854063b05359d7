import X86

/// A CPUID policy as users write it (JSON for `--cpuid FILE`), turned into a
/// concrete `CPUIDPolicy` table by `build()`. Every field is optional and
/// changes the named base policy.
///
/// ```json
/// { "base": "kvm", "vendor": "AuthenticAMD", "brand": "Example CPU",
///   "family": 25, "model": 1, "stepping": 1,
///   "enable": ["popcnt"], "disable": ["nx"], "hypervisor": "kvm" }
/// ```
public struct CPUIDPolicySpec: Codable, Equatable, Sendable {
  public var base: String?
  public var vendor: String?
  public var brand: String?
  public var family: UInt32?
  public var model: UInt32?
  public var stepping: UInt32?
  public var maxBasicLeaf: UInt32?
  public var maxExtendedLeaf: UInt32?
  /// Feature names (Linux /proc/cpuinfo spelling; KVM paravirtual ones prefixed `kvm_`).
  public var enable: [String]?
  public var disable: [String]?
  /// "swiftvmm" (our signature), "kvm" ("KVMKVMKVM" with kvm-clock), or "none" (no hypervisor bit).
  public var hypervisor: String?

  public init() {}
}

/// Policy files are checked strictly: an unknown key is an error naming its JSON
/// path (a misspelt key must not be silently ignored), and numbers may be written
/// as JSON numbers or as strings ("0x80000008", "25").
extension CPUIDPolicySpec {
  /// The keys a policy file may use.
  public static let keys = [
    "base", "vendor", "brand", "family", "model", "stepping", "maxBasicLeaf", "maxExtendedLeaf",
    "enable", "disable", "hypervisor",
  ]

  struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: Key.self)
    for k in c.allKeys where !CPUIDPolicySpec.keys.contains(k.stringValue) {
      let hint =
        NearestName.suggest(k.stringValue, among: CPUIDPolicySpec.keys).map {
          "; did you mean '\($0)'?"
        } ?? " (keys: \(CPUIDPolicySpec.keys.joined(separator: ", ")))"
      throw CPUIDPolicyError.badValue(
        "unknown key '\(k.stringValue)' at \(CPUIDPolicySpec.jsonPath(c.codingPath + [k]))\(hint)")
    }
    func number(_ name: String) throws -> UInt32? {
      let k = Key(name)
      guard c.contains(k) else { return nil }
      if let n = try? c.decode(UInt32.self, forKey: k) { return n }
      let path = CPUIDPolicySpec.jsonPath(c.codingPath + [k])
      guard let text = try? c.decode(String.self, forKey: k) else {
        throw CPUIDPolicyError.badValue(
          "\(path): expected a number from 0 to 0xFFFFFFFF (decimal, or a hex string like \"0x80000008\")"
        )
      }
      let t = text.lowercased()
      let n = t.hasPrefix("0x") ? UInt32(t.dropFirst(2), radix: 16) : UInt32(t)
      guard let n else {
        throw CPUIDPolicyError.badValue(
          "\(path): '\(text)' is not a number from 0 to 0xFFFFFFFF (decimal, or hex with 0x)")
      }
      return n
    }
    self.init()
    base = try c.decodeIfPresent(String.self, forKey: Key("base"))
    vendor = try c.decodeIfPresent(String.self, forKey: Key("vendor"))
    brand = try c.decodeIfPresent(String.self, forKey: Key("brand"))
    family = try number("family")
    model = try number("model")
    stepping = try number("stepping")
    maxBasicLeaf = try number("maxBasicLeaf")
    maxExtendedLeaf = try number("maxExtendedLeaf")
    enable = try c.decodeIfPresent([String].self, forKey: Key("enable"))
    disable = try c.decodeIfPresent([String].self, forKey: Key("disable"))
    hypervisor = try c.decodeIfPresent(String.self, forKey: Key("hypervisor"))
  }

  /// "$.enable[2]" for a coding path.
  public static func jsonPath(_ path: [CodingKey]) -> String {
    "$" + path.map { k in k.intValue.map { "[\($0)]" } ?? ".\(k.stringValue)" }.joined()
  }
}

public enum CPUIDPolicyError: Error, CustomStringConvertible, Equatable {
  case unknownBase(String)
  case unknownFeature(String)
  case badVendor(String)
  case badValue(String)
  case unsupportedFeatures(engine: String, features: [String])
  case unreadable(String)

  public var description: String {
    switch self {
    case .unknownBase(let s):
      return
        "unknown CPUID policy '\(s)'; known: \(CPUIDPolicy.namedPolicies.joined(separator: ", "))"
    case .unknownFeature(let s):
      let names = CPUFeature.all.map(\.name)
      let hint = NearestName.suggest(s, among: names).map { "; did you mean '\($0)'?" } ?? ""
      return
        "unknown CPU feature '\(s)' in the CPUID policy\(hint) (all names: swiftvmm cpuid --list-features)"
    case .badVendor(let s): return "vendor string '\(s)' must be exactly 12 ASCII characters"
    case .badValue(let s): return s
    case .unsupportedFeatures(let engine, let f):
      return
        "the CPUID policy claims features the \(engine) engine cannot provide: \(f.joined(separator: ", "))"
    case .unreadable(let s): return s
    }
  }
}

extension CPUIDPolicy {
  public static let namedPolicies = ["default", "kvm", "minimal"]

  /// kvm-clock features SwiftVMM implements when the KVM signature is shown.
  static let kvmParavirtFeatures = [
    "kvm_kvmclock", "kvm_clocksource2", "kvm_nopiodelay", "kvm_clocksource_stable",
  ]

  /// A policy by name: `default` (SwiftVMM signature), `kvm` (KVM signature and
  /// kvm-clock), `minimal` (no hypervisor leaves, nothing beyond SSE2).
  public static func named(_ name: String) throws -> CPUIDPolicy {
    switch name {
    case "default", "swiftvmm": return .default
    case "kvm":
      var s = CPUIDPolicySpec()
      s.hypervisor = "kvm"
      return try s.build()
    case "minimal":
      var s = CPUIDPolicySpec()
      s.hypervisor = "none"
      s.disable = [
        "cx16", "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "movbe", "bmi1", "bmi2", "abm",
        "rdtscp", "pdpe1gb",
      ]
      return try s.build()
    default: throw CPUIDPolicyError.unknownBase(name)
    }
  }

  func result(_ leaf: UInt32, _ subleaf: UInt32 = 0) -> CPUIDResult? {
    entries.first { $0.function == leaf && (!$0.indexed || $0.index == subleaf) }?.result
  }

  mutating func update(_ leaf: UInt32, _ subleaf: UInt32 = 0, _ body: (inout CPUIDResult) -> Void) {
    if let i = entries.firstIndex(where: {
      $0.function == leaf && (!$0.indexed || $0.index == subleaf)
    }) {
      body(&entries[i].result)
    } else {
      var r = CPUIDResult()
      body(&r)
      entries.append(
        CPUIDEntry(function: leaf, index: subleaf, indexed: leaf == 7 || leaf == 0xD, result: r))
      entries.sort { ($0.function, $0.index) < ($1.function, $1.index) }
    }
  }

  public func has(_ f: CPUFeature) -> Bool {
    guard let r = result(f.leaf, f.subleaf) else { return false }
    return r.value(f.register) & (1 << f.bit) != 0
  }

  public mutating func set(_ f: CPUFeature, _ on: Bool) {
    update(f.leaf, f.subleaf) { r in
      let v = r.value(f.register)
      r.setValue(f.register, on ? v | (1 << f.bit) : v & ~(1 << f.bit))
    }
  }

  /// Named features this policy turns on.
  public var enabledFeatures: [CPUFeature] { CPUFeature.all.filter { has($0) } }

  /// This policy without the named features the engine lacks (for defaults, not user policies).
  public func masked(to implemented: Set<String>) -> CPUIDPolicy {
    var p = self
    for f in enabledFeatures where !implemented.contains(f.name) { p.set(f, false) }
    return p
  }

  /// Refuses a policy that claims a feature the engine does not implement.
  public func validate(engine: String, implemented: Set<String>) throws {
    let missing = enabledFeatures.map(\.name).filter { !implemented.contains($0) }
    guard missing.isEmpty else {
      throw CPUIDPolicyError.unsupportedFeatures(engine: engine, features: missing)
    }
  }

  /// The vendor string from leaf 0.
  public var vendor: String {
    guard let r = result(0) else { return "" }
    return CPUIDPolicy.string(words: [r.ebx, r.edx, r.ecx])
  }

  /// The brand string from leaves 0x80000002-4.
  public var brand: String {
    let words = (0..<3).flatMap { i -> [UInt32] in
      guard let r = result(0x8000_0002 + UInt32(i)) else { return [0, 0, 0, 0] }
      return [r.eax, r.ebx, r.ecx, r.edx]
    }
    return CPUIDPolicy.string(words: words)
  }

  public static func string(words: [UInt32]) -> String {
    let bytes = words.flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (8 * $0)) } }
    return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
  }

  /// The table as `swiftvmm cpuid` prints it.
  public func formatted() -> String {
    var lines = ["vendor: \(vendor)", "brand:  \(brand)"]
    if let r = result(1) {
      let family = (r.eax >> 8) & 0xF + ((r.eax >> 8) & 0xF == 0xF ? (r.eax >> 20) & 0xFF : 0)
      let model = (r.eax >> 4) & 0xF | ((r.eax >> 16) & 0xF) << 4
      lines.append("family \(family), model \(model), stepping \(r.eax & 0xF)")
    }
    lines.append("features: " + enabledFeatures.map(\.name).joined(separator: " "))
    lines.append("level:  " + X86Level.describe(self))
    lines.append("")
    lines.append("leaf     sub  eax      ebx      ecx      edx")
    func hex(_ v: UInt32, _ w: Int = 8) -> String {
      let s = String(v, radix: 16)
      return String(repeating: "0", count: max(0, w - s.count)) + s
    }
    for e in entries {
      lines.append(
        "\(hex(e.function)) \(e.indexed ? hex(e.index, 2) + " " : "   ") \(hex(e.result.eax)) \(hex(e.result.ebx)) \(hex(e.result.ecx)) \(hex(e.result.edx))"
      )
    }
    return lines.joined(separator: "\n")
  }
}

extension CPUIDResult {
  public func value(_ r: CPUIDRegister) -> UInt32 {
    switch r {
    case .eax: return eax
    case .ebx: return ebx
    case .ecx: return ecx
    case .edx: return edx
    }
  }
  public mutating func setValue(_ r: CPUIDRegister, _ v: UInt32) {
    switch r {
    case .eax: eax = v
    case .ebx: ebx = v
    case .ecx: ecx = v
    case .edx: edx = v
    }
  }
}

extension CPUIDPolicySpec {
  public func build() throws -> CPUIDPolicy {
    var p: CPUIDPolicy = try base.map { try CPUIDPolicy.named($0) } ?? .default
    if let v = vendor {
      guard v.utf8.count == 12, v.allSatisfy(\.isASCII) else { throw CPUIDPolicyError.badVendor(v) }
      let r = CPUIDPolicy.registers(fromVendor: v)
      p.update(0) {
        $0.ebx = r.ebx
        $0.ecx = r.ecx
        $0.edx = r.edx
      }
    }
    if let b = brand {
      guard b.utf8.count <= 47 else {
        throw CPUIDPolicyError.badValue("brand string longer than 47 bytes")
      }
      for e in CPUIDPolicy.brandLeaves(b) { p.update(e.function) { $0 = e.result } }
    }
    if family != nil || model != nil || stepping != nil {
      let old = p.result(1)?.eax ?? 0
      let oldFamily = (old >> 8) & 0xF + ((old >> 8) & 0xF == 0xF ? (old >> 20) & 0xFF : 0)
      let f = family ?? oldFamily
      let m = model ?? ((old >> 4) & 0xF | ((old >> 16) & 0xF) << 4)
      let s = stepping ?? (old & 0xF)
      guard f <= 0xF + 0xFF, m <= 0xFF, s <= 0xF else {
        throw CPUIDPolicyError.badValue("family \(f), model \(m), stepping \(s) out of range")
      }
      var eax = s | (m & 0xF) << 4 | (m >> 4) << 16
      eax |= f >= 0xF ? (0xF << 8 | (f - 0xF) << 20) : f << 8
      p.update(1) { $0.eax = eax }
    }
    if let m = maxBasicLeaf { p.update(0) { $0.eax = m } }
    if let m = maxExtendedLeaf {
      guard m >= 0x8000_0000 else {
        throw CPUIDPolicyError.badValue("maxExtendedLeaf must be >= 0x80000000")
      }
      p.update(0x8000_0000) { $0.eax = m }
    }
    switch hypervisor {
    case nil, "swiftvmm": break
    case "none":
      p.entries.removeAll { $0.function >= 0x4000_0000 && $0.function < 0x5000_0000 }
      p.set(CPUFeature.named("hypervisor")!, false)
    case "kvm":
      let sig = CPUIDPolicy.registers(fromSignature: "KVMKVMKVM")
      p.update(0x4000_0000) {
        $0 = CPUIDResult(eax: 0x4000_0001, ebx: sig.ebx, ecx: sig.ecx, edx: sig.edx)
      }
      p.update(0x4000_0001) { $0 = CPUIDResult() }
      for n in CPUIDPolicy.kvmParavirtFeatures { p.set(CPUFeature.named(n)!, true) }
      p.set(CPUFeature.named("hypervisor")!, true)
    case let other?:
      throw CPUIDPolicyError.badValue("hypervisor must be swiftvmm, kvm or none, not '\(other)'")
    }
    for n in enable ?? [] {
      guard let f = CPUFeature.named(n) else { throw CPUIDPolicyError.unknownFeature(n) }
      p.set(f, true)
    }
    for n in disable ?? [] {
      guard let f = CPUFeature.named(n) else { throw CPUIDPolicyError.unknownFeature(n) }
      p.set(f, false)
    }
    // The vendor decides the cache leaves' format.
    p.setCacheLeaves()
    return p
  }
}
