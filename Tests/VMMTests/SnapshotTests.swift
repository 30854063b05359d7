import Engine
import Foundation
import TestSupport
import XCTest

@testable import VMM

/// Snapshots: save at an exact instruction, restore in a fresh machine (on the
/// same or another engine), and compare with a run that never stopped.
final class SnapshotTests: XCTestCase {
  var dir: URL!

  override func setUpWithError() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "snapshot-tests-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: dir)
  }

  static func config(_ guest: String, cmdline: String = "", engine: EngineKind) throws
    -> MachineConfig
  {
    var c = MachineConfig(
      kernel: try GuestImages.bytes(guest), kernelName: guest, engine: engine)
    c.commandLine = cmdline
    c.memorySize = 32 << 20
    c.deterministic = engine != .kvm
    c.timeout = 120
    return c
  }

  struct Run {
    var outcome: MachineOutcome
    var output: [UInt8]
    var instructions: UInt64
  }

  static func run(_ m: Machine, _ console: ConsoleOutput) -> Run {
    let o = m.run()
    return Run(
      outcome: o, output: console.captured, instructions: m.statistics()["instructions"] ?? 0)
  }

  /// Runs `guest` uninterrupted, then again stopping at instruction `at`, saving,
  /// restoring on `to` and running to the end; the two must agree byte for byte.
  func checkIdentity(
    _ guest: String, cmdline: String = "", at: UInt64, from: EngineKind, to: EngineKind,
    file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let c1 = ConsoleOutput(capturing: ())
    let whole = Self.run(
      try Machine(config: try Self.config(guest, cmdline: cmdline, engine: from), console: c1), c1)
    guard whole.instructions > at else {
      return XCTFail(
        "\(guest) retires only \(whole.instructions) instructions", file: file, line: line)
    }

    let c2 = ConsoleOutput(capturing: ())
    let m = try Machine(config: try Self.config(guest, cmdline: cmdline, engine: from), console: c2)
    m.stopAtInstruction = at
    let first = Self.run(m, c2)
    XCTAssertEqual(first.outcome, .instructionStop(at), file: file, line: line)
    XCTAssertEqual(first.instructions, at, file: file, line: line)
    let path = dir.appendingPathComponent("\(guest)-\(at).snap").path
    let summary = try m.saveSnapshot(to: path)
    XCTAssertGreaterThan(summary.pagesStored, 0)

    let c3 = ConsoleOutput(capturing: ())
    let r = try Machine(restoring: path, engine: to, timeout: 120, console: c3)
    XCTAssertEqual(r.cpu.engineName, to.rawValue, file: file, line: line)
    let rest = Self.run(r, c3)
    XCTAssertEqual(rest.outcome, whole.outcome, file: file, line: line)
    XCTAssertEqual(
      String(decoding: first.output + rest.output, as: UTF8.self),
      String(decoding: whole.output, as: UTF8.self), file: file, line: line)
    if to != .kvm && from != .kvm {
      XCTAssertEqual(rest.instructions, whole.instructions, file: file, line: line)
    }
  }

  /// Guests that exercise MSRs (syscall), the IDT and faults (exceptions), paging
  /// and mode switches, each stopped in the middle.
  static let guests: [(String, String, UInt64)] = [
    ("hello.elf", "", 5_000), ("syscall.elf", "", 30_000), ("exceptions.elf", "", 40_000),
    ("paging.elf", "", 25_000), ("modes.elf", "", 20_000),
    ("exits.elf", "exits.elf count=300", 10_000),
  ]

  func testInterpreterRoundTripIsIdentical() throws {
    for (g, c, n) in Self.guests {
      try checkIdentity(g, cmdline: c, at: n, from: .interpreter, to: .interpreter)
    }
  }

  func testTranslatorRoundTripIsIdentical() throws {
    for (g, c, n) in Self.guests {
      try checkIdentity(g, cmdline: c, at: n, from: .translator, to: .translator)
    }
  }

  func testInterpreterAndTranslatorHandOver() throws {
    for (g, c, n) in Self.guests {
      try checkIdentity(g, cmdline: c, at: n, from: .interpreter, to: .translator)
      try checkIdentity(g, cmdline: c, at: n, from: .translator, to: .interpreter)
    }
  }
}
