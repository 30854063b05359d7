import Foundation
import XCTest

/// Every target declares in Package.swift each module its sources import: an
/// undeclared import builds only by accident (another target pulled it in).
final class PackageImportsTests: XCTestCase {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
  static let system: Set<String> = [
    "Foundation", "FoundationEssentials", "Glibc", "Musl", "Darwin", "Dispatch", "XCTest",
    "Synchronization", "Testing", "os",
  ]

  struct Target {
    var name: String
    var directory: String
    var declared: Set<String>
  }

  static func targets(in manifest: String) -> [Target] {
    let kinds = [".target(", ".executableTarget(", ".testTarget("]
    var starts: [(String.Index, String)] = []
    for k in kinds {
      var from = manifest.startIndex
      while let r = manifest.range(of: k, range: from..<manifest.endIndex) {
        starts.append((r.lowerBound, k))
        from = r.upperBound
      }
    }
    starts.sort { $0.0 < $1.0 }
    var out: [Target] = []
    for (i, (start, kind)) in starts.enumerated() {
      let end = i + 1 < starts.count ? starts[i + 1].0 : manifest.endIndex
      let text = String(manifest[start..<end])
      guard let name = firstMatch(#"name:\s*"([^"]+)""#, in: text) else { continue }
      let dir =
        firstMatch(#"path:\s*"([^"]+)""#, in: text)
        ?? (kind == ".testTarget(" ? "Tests/\(name)" : "Sources/\(name)")
      var declared = Set<String>()
      if let deps = text.range(of: "dependencies:") {
        var depth = 0
        var body = ""
        for c in text[deps.upperBound...] {
          if c == "[" { depth += 1 }
          if c == "]" {
            depth -= 1
            if depth == 0 { break }
          }
          if depth > 0 { body.append(c) }
        }
        declared = Set(allMatches(#""([A-Za-z0-9_-]+)""#, in: body))
      }
      out.append(Target(name: name, directory: dir, declared: declared))
    }
    return out
  }

  static func imports(under dir: URL) -> [String: String] {
    var found: [String: String] = [:]
    guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else {
      return found
    }
    for case let url as URL in e where url.pathExtension == "swift" {
      guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
      for line in text.split(separator: "\n") {
        if let m = firstMatch(
          #"^\s*(?:@\w+(?:\([^)]*\))?\s+)*import\s+(?:(?:enum|struct|class|protocol|func|typealias|var|let)\s+)?(\w+)"#,
          in: String(line))
        {
          found[m] = url.lastPathComponent
        }
      }
    }
    return found
  }

  func testEveryTargetDeclaresWhatItImports() throws {
    let manifest = try String(
      contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
    let targets = Self.targets(in: manifest)
    XCTAssertTrue(targets.contains { $0.name == "swiftvmm" }, "Package.swift not understood")
    for t in targets {
      let dir = Self.root.appendingPathComponent(t.directory)
      for (module, file) in Self.imports(under: dir)
      where !Self.system.contains(module) && module != t.name && !t.declared.contains(module) {
        XCTFail("\(t.name) imports \(module) (\(file)) but Package.swift does not declare it")
      }
    }
  }

  /// Attributes with arguments (`@_spi(Name) import`) hide no import.
  func testAttributedImportsAreSeen() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "imports-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try Data("@_spi(Command) import Foo\n@testable import Bar\nimport struct Baz.Q\n".utf8)
      .write(to: dir.appendingPathComponent("a.swift"))
    XCTAssertEqual(Set(Self.imports(under: dir).keys), ["Foo", "Bar", "Baz"])
  }

  static func firstMatch(_ pattern: String, in s: String) -> String? {
    allMatches(pattern, in: s).first
  }

  static func allMatches(_ pattern: String, in s: String) -> [String] {
    guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
    return re.matches(in: s, range: NSRange(s.startIndex..., in: s)).compactMap {
      Range($0.range(at: 1), in: s).map { String(s[$0]) }
    }
  }
}
