import Engine
import Foundation

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
    return try CPUIDPolicy.parse(json: [UInt8](data), name: nameOrPath)
  }

  /// A policy file's bytes: syntax errors say line and column, type errors and
  /// unknown keys their JSON path (`$.enable[0]`).
  public static func parse(json: [UInt8], name: String) throws -> CPUIDPolicy {
    let data = Data(json)
    do {
      _ = try JSONSerialization.jsonObject(with: data)
    } catch {
      throw CPUIDPolicyError.unreadable(
        "CPUID policy file '\(name)' is not valid JSON\(syntaxErrorPlace(error, in: json))")
    }
    let spec: CPUIDPolicySpec
    do {
      spec = try JSONDecoder().decode(CPUIDPolicySpec.self, from: data)
    } catch let e as CPUIDPolicyError {
      throw CPUIDPolicyError.unreadable("CPUID policy file '\(name)': \(e)")
    } catch let DecodingError.typeMismatch(type, ctx) {
      let t = "\(type)"
      let what =
        ctx.codingPath.isEmpty
        ? "one JSON object"
        : t.hasPrefix("Array")
          ? "a list of strings"
          : t.hasPrefix("Dictionary") ? "an object" : t == "String" ? "a string" : "a number"
      throw CPUIDPolicyError.unreadable(
        "CPUID policy file '\(name)': \(CPUIDPolicySpec.jsonPath(ctx.codingPath)): expected \(what)"
      )
    } catch {
      throw CPUIDPolicyError.unreadable("CPUID policy file '\(name)' is not valid: \(error)")
    }
    do {
      return try spec.build()
    } catch let e as CPUIDPolicyError {
      throw CPUIDPolicyError.unreadable("CPUID policy file '\(name)': \(e)")
    }
  }

  /// " at line L, column C" from Foundation's "around character N" (a byte offset).
  static func syntaxErrorPlace(_ error: Error, in bytes: [UInt8]) -> String {
    let text = "\((error as NSError).userInfo[NSDebugDescriptionErrorKey] ?? error)"
    guard let r = text.range(of: #"character [0-9]+"#, options: .regularExpression),
      let offset = Int(text[r].dropFirst("character ".count))
    else { return bytes.isEmpty ? " (the file is empty)" : "" }
    var line = 1
    var column = 1
    for b in bytes.prefix(offset) {
      if b == 0x0A {
        line += 1
        column = 1
      } else if b & 0xC0 != 0x80 {
        column += 1  // count characters, not UTF-8 continuation bytes
      }
    }
    return " at line \(line), column \(column)"
  }

  /// The policy a guest on `engine` sees: an explicit policy must fit the engine
  /// (refused otherwise); without one, the default policy less what the engine lacks.
  /// `run`, `linux` and `swiftvmm cpuid` all use this rule.
  public static func forEngine(_ explicit: CPUIDPolicy?, engine: EngineKind) throws -> CPUIDPolicy {
    let implemented = EngineFeatures.implemented(by: engine)
    let p = explicit ?? CPUIDPolicy.default.masked(to: implemented)
    try p.validate(engine: engine.rawValue, implemented: implemented)
    return p
  }
}

/// The CPU features each engine can really provide, for policy validation:
/// what the engine's vCPU type publishes (`VirtualCPU.implementedFeatures`).
public enum EngineFeatures {
  public static func implemented(by engine: EngineKind) -> Set<String> {
    EngineFactory.cpuType(for: engine).implementedFeatures
  }
}
