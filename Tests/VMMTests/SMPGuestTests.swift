import Foundation
import TestSupport
import XCTest

/// Guests/smp on several vCPUs: AP start-up, LOCK and ticket-lock contention,
/// IPIs in every mode and a TLB shootdown, checked against QEMU's `-smp N`.
final class SMPGuestTests: XCTestCase {
  func run(_ args: [String]) throws -> (status: Int32, output: String) {
    guard FileManager.default.isExecutableFile(atPath: CLITests.binary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner at \(CLITests.binary)")
    }
    let kernel = try GuestImages.path("smp.elf")
    let r = try GuestImages.run(
      CLITests.binary,
      ["run", "--kernel", kernel, "--memory", "128M", "--timeout", "200"] + args, timeout: 240)
    return (r.status, r.output)
  }

  func matchesQEMU(cpus: Int, engine: String = "interpreter") throws {
    let ours = try run(["--cpus", "\(cpus)", "--engine", engine])
    XCTAssertTrue(ours.output.contains("PASS smp"), ours.output)
    XCTAssertTrue(ours.output.contains("smp: \(cpus) of \(cpus) cpus started"), ours.output)
    let (qs, qemu) = try QEMUCrossCheckTests.qemuOutput(
      try GuestImages.path("smp.elf"), firstLine: "smp:", cmdline: "", cpus: cpus)
    XCTAssertEqual(ours.status, qs, "exit status; our output:\n\(ours.output)")
    XCTAssertEqual(ours.output, qemu)
  }

  func testTwoCPUsMatchQEMU() throws { try matchesQEMU(cpus: 2) }
  func testFourCPUsMatchQEMU() throws { try matchesQEMU(cpus: 4) }
  func testFourCPUsOnTheTranslator() throws { try matchesQEMU(cpus: 4, engine: "translator") }

  /// Round-robin by instruction count: two runs print the same and retire the
  /// same instructions on every vCPU.
  func testDeterministicTwiceIsIdentical() throws {
    var results: [(String, [String: UInt64])] = []
    for k in 0..<2 {
      let statsFile = FileManager.default.temporaryDirectory
        .appendingPathComponent("smp-stats-\(getpid())-\(k).json")
      defer { try? FileManager.default.removeItem(at: statsFile) }
      let r = try run(["--cpus", "4", "--deterministic", "--stats", statsFile.path])
      XCTAssertTrue(r.output.contains("PASS smp"), r.output)
      let json = try JSONSerialization.jsonObject(with: Data(contentsOf: statsFile))
      let counters = (json as? [String: Any])?["counters"] as? [String: Any] ?? [:]
      var picked: [String: UInt64] = [:]
      for (k, v) in counters where k.hasSuffix("instructions") || k.hasPrefix("vmm.vcpu") {
        picked[k] = (v as? NSNumber)?.uint64Value
      }
      results.append((r.output, picked))
    }
    XCTAssertEqual(results[0].0, results[1].0)
    XCTAssertEqual(results[0].1, results[1].1)
    XCTAssertEqual(results[0].1["vmm.vcpu_startups"], 3)
    XCTAssertNotNil(results[0].1["cpu3.instructions"])
    XCTAssertGreaterThan(results[0].1["cpu3.instructions"] ?? 0, 100_000, "AP 3 did its share")
  }
}
