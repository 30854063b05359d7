import Foundation
import TestSupport
import XCTest

/// The `swiftvmm` command runs VMs through SwiftVMMKit only: it never builds a
/// machine, session, gdb server or API server itself. The measuring tools, which
/// run many short machines and read their internals, are the listed exceptions.
final class CommandUsesKitTests: XCTestCase {
  /// Files that may build `Machine`s directly, and why (docs/ARCHITECTURE.md).
  static let tools: [String: String] = [
    "BenchBootCommand.swift": "bench boot: many machines, timed, read back internals",
    "BenchIOCommand.swift": "bench io: disk and network throughput inside one machine",
    "BenchMeasure.swift": "bench: MIPS and counters of short runs",
    "MMUCommand.swift": "mmu-compare: one run per MMU mode, per-mode MMU counters",
  ]

  func testVMsAreBuiltOnlyThroughTheLibrary() throws {
    let dir = GuestImages.repoRoot.appendingPathComponent("Sources/swiftvmm")
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
      .filter { $0.hasSuffix(".swift") }
    XCTAssertTrue(files.contains("RunCommand.swift"), "\(files)")
    // A constructor call of one of the VMM's own types (not VirtualMachine's).
    let built = try NSRegularExpression(
      pattern: #"(?<![A-Za-z])(Machine|VMSession|GDBServer|APIServer|VMController)\("#)
    for file in files {
      let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
      for m in built.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
        let type = String(text[Range(m.range(at: 1), in: text)!])
        if type == "Machine" && Self.tools[file] != nil { continue }
        XCTFail("\(file) builds a \(type): VMs go through SwiftVMMKit.VirtualMachine")
      }
    }
  }
}
