import Devices
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

  static func config(
    _ guest: String, cmdline: String = "", engine: EngineKind, cpus: Int = 1
  ) throws -> MachineConfig {
    var c = MachineConfig(
      kernel: try GuestImages.bytes(guest), kernelName: guest, engine: engine)
    c.commandLine = cmdline
    c.memorySize = cpus > 1 ? 128 << 20 : 32 << 20
    c.cpus = cpus
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
    _ guest: String, cmdline: String = "", cpus: Int = 1, at: UInt64, from: EngineKind,
    to: EngineKind, file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let c1 = ConsoleOutput(capturing: ())
    let whole = Self.run(
      try Machine(
        config: try Self.config(guest, cmdline: cmdline, engine: from, cpus: cpus), console: c1), c1
    )
    guard whole.instructions > at else {
      return XCTFail(
        "\(guest) retires only \(whole.instructions) instructions", file: file, line: line)
    }

    let c2 = ConsoleOutput(capturing: ())
    let m = try Machine(
      config: try Self.config(guest, cmdline: cmdline, engine: from, cpus: cpus), console: c2)
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

  /// Four vCPUs mid-way through AP start-up, locks and IPIs: every vCPU's state,
  /// every local APIC and the scheduler's turn come back.
  func testSMPRoundTripIsIdentical() throws {
    try checkIdentity("smp.elf", cpus: 4, at: 3_000_000, from: .interpreter, to: .interpreter)
    try checkIdentity("smp.elf", cpus: 2, at: 1_234_567, from: .translator, to: .interpreter)
  }

  func testInterpreterAndTranslatorHandOver() throws {
    for (g, c, n) in Self.guests {
      try checkIdentity(g, cmdline: c, at: n, from: .interpreter, to: .translator)
      try checkIdentity(g, cmdline: c, at: n, from: .translator, to: .interpreter)
    }
  }
}

/// Damaged snapshots are refused with one clear error, before any machine is built.
final class SnapshotFileTests: XCTestCase {
  var dir: URL!
  var good: String!
  var bytes: [UInt8]!

  override func setUpWithError() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "snapshot-file-tests-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    good = dir.appendingPathComponent("good.snap").path
    let c = try SnapshotTests.config("syscall.elf", engine: .interpreter)
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    m.stopAtInstruction = 20_000
    XCTAssertEqual(m.run(), .instructionStop(20_000))
    try m.saveSnapshot(to: good)
    bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: dir)
  }

  func write(_ b: [UInt8], _ name: String) throws -> String {
    let p = dir.appendingPathComponent(name).path
    try Data(b).write(to: URL(fileURLWithPath: p))
    return p
  }

  /// Recomputes the trailer's checksum, so a test reaches the parsers behind it.
  static func reseal(_ b: inout [UInt8]) {
    let sum = b.withUnsafeBytes { SnapshotFormat.checksum(.init(rebasing: $0[..<(b.count - 4)])) }
    for i in 0..<4 { b[b.count - 4 + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt32(i))) }
  }

  func restoreError(_ path: String) -> Error? {
    do {
      _ = try Machine(restoring: path, console: ConsoleOutput(capturing: ()))
      return nil
    } catch { return error }
  }

  func testGoodFileRestores() throws {
    XCTAssertNil(restoreError(good))
    XCTAssertEqual(bytes.prefix(8), SnapshotFormat.magic[...])
  }

  func testCorruptByteIsRefusedByTheChecksum() throws {
    for offset in [20, bytes.count / 2, bytes.count - 20] {
      var b = bytes!
      b[offset] ^= 0x40
      let e = restoreError(try write(b, "corrupt.snap"))
      guard case .corrupt(let why)? = e as? SnapshotError else {
        return XCTFail("\(String(describing: e))")
      }
      XCTAssertTrue(why.contains("checksum"), why)
    }
  }

  func testTruncatedFileIsRefused() throws {
    for n in [0, 10, 100, bytes.count / 2, bytes.count - 1] {
      let e = restoreError(try write(Array(bytes.prefix(n)), "short.snap"))
      guard let s = e as? SnapshotError else { return XCTFail("\(n): \(String(describing: e))") }
      switch s {
      case .truncated, .corrupt: break
      default: XCTFail("\(n) bytes: \(s)")
      }
    }
  }

  func testOtherFormatVersionIsRefused() throws {
    var b = bytes!
    b[8] = 99
    let e = restoreError(try write(b, "v99.snap"))
    XCTAssertEqual(
      e as? SnapshotError, .versionMismatch(found: 99, expected: SnapshotFormat.version))
    XCTAssertEqual(
      "\(e!)", "snapshot format version 99 is not supported (this SwiftVMM reads version 1)")
  }

  func testOtherFileIsNotASnapshot() throws {
    let e = restoreError(try write(Array(repeating: 0x7F, count: 4096), "junk.snap"))
    XCTAssertEqual(e as? SnapshotError, .notASnapshot(dir.appendingPathComponent("junk.snap").path))
    XCTAssertNotNil(restoreError(dir.appendingPathComponent("missing.snap").path) as? SnapshotError)
  }

  func testPartVersionMismatchIsRefused() throws {
    // A part record from another SwiftVMM: same container, the UART's state version changed.
    var b = bytes!
    let needle = Array(#""version":1"#.utf8)
    let uart = Array("part.uart16550".utf8)
    guard let at = find(uart, in: b), let v = find(needle, in: b, from: at) else {
      return XCTFail("no UART record")
    }
    b[v + needle.count - 1] = UInt8(ascii: "7")
    Self.reseal(&b)
    let e = restoreError(try write(b, "part.snap"))
    XCTAssertEqual(
      e as? SnapshotStateError, .versionMismatch(part: "uart16550", found: 7, expected: 1))
  }

  /// NeverTrap: random damage behind a valid checksum reaches every parser; each
  /// must refuse or restore, never crash.
  func testRandomDamageNeverTraps() throws {
    var rng = SeededRandom(seed: 0x5A4E)
    var refused = 0
    for i in 0..<60 {
      var b = bytes!
      for _ in 0..<(1 + Int(rng.next() % 8)) {
        // Mostly the small sections before guest memory (meta, vCPU, parts).
        let limit = i % 3 == 0 ? b.count - 16 : min(b.count - 16, 16_384)
        let o = 16 + Int(rng.next() % UInt64(limit - 16))
        b[o] = UInt8(truncatingIfNeeded: rng.next())
      }
      Self.reseal(&b)
      if restoreError(try write(b, "fuzz.snap")) != nil { refused += 1 }
    }
    print("snapshot fuzz: \(refused) of 60 damaged files refused")
  }

  func find(_ needle: [UInt8], in hay: [UInt8], from: Int = 0) -> Int? {
    guard hay.count >= needle.count else { return nil }
    var i = from
    while i <= hay.count - needle.count {
      if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
      i += 1
    }
    return nil
  }
}
