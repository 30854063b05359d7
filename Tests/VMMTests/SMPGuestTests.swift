import Foundation
import TestSupport
import XCTest

@testable import VMM

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

/// Machine-level SMP behaviour with tiny flat guests.
final class SMPMachineTests: XCTestCase {
  func boot(_ code: [UInt8], cpus: Int, maxInstructions: UInt64? = nil) throws -> (
    MachineOutcome, Machine
  ) {
    var c = MachineConfig(kernel: FlatMultiboot.image(code: code), kernelName: "t", engine: .interpreter)
    c.memorySize = 64 << 20
    c.cpus = cpus
    c.timeout = 60
    c.maxInstructions = maxInstructions
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    return (m.run(), m)
  }

  /// The APs wait for a SIPI that never comes and the BSP halts with IF=0:
  /// nothing can run again, which the VMM says instead of hanging.
  func testEveryVCPUHaltedWithInterruptsOffIsReported() throws {
    let (o, _) = try boot([0xFA, 0xF4], cpus: 2)
    XCTAssertEqual(o, .guestFailure("every vCPU halted with interrupts disabled; none can resume"))
  }

  /// A guest that hammers INIT and SIPI at the other CPUs (which then run
  /// whatever is at 0x8000) neither traps nor hangs the host: the watchdog ends it.
  func testINITAndSIPIStormEndsAtTheWatchdog() throws {
    let initOthers: [UInt8] = [0xC7, 0x05, 0x00, 0x03, 0xE0, 0xFE, 0x00, 0x45, 0x0C, 0x00]
    let sipiOthers: [UInt8] = [0xC7, 0x05, 0x00, 0x03, 0xE0, 0xFE, 0x08, 0x46, 0x0C, 0x00]
    let (o, m) = try boot(
      initOthers + sipiOthers + [0xEB, 0xEA], cpus: 4, maxInstructions: 200_000)
    XCTAssertEqual(o, .watchdog("instruction limit of 200000 reached (--max-instructions)"))
    XCTAssertGreaterThan(m.statistics()["vmm.vcpu_startups"] ?? 0, 3)
  }
}
