import Engine
import TestSupport
import XCTest

@testable import VMM

/// Random machine code must never crash or hang the host: every run ends in
/// an outcome (a guest failure, a debug exit, a watchdog) within its budget.
final class HostileGuestTests: XCTestCase {
  func testRandomCodeNeverCrashesTheHost() throws {
    var rng = SeededRandom(seed: 0x5EED_0001)
    var outcomes: [String: Int] = [:]
    for i in 0..<200 {
      var code = (0..<512).map { _ in UInt8.random(in: 0...255, using: &rng) }
      // Every fourth case first enters a long-mode-like mix: prefix REX/0F-heavy bytes.
      if i % 4 == 0 {
        for j in stride(from: 0, to: code.count, by: 3) { code[j] = [0x48, 0x0F, 0x66][j % 3] }
      }
      var c = MachineConfig(
        kernel: FlatMultiboot.image(code: code), kernelName: "fuzz\(i)", engine: .interpreter)
      c.memorySize = 16 << 20
      c.maxInstructions = 20_000
      c.timeout = 30
      let console = ConsoleOutput(capturing: ())
      let m = try Machine(config: c, console: console)
      let o = m.run()
      let key: String
      switch o {
      case .guestFailure: key = "guest failure"
      case .watchdog: key = "watchdog"
      case .debugExit: key = "debug exit"
      case .reset, .powerOff: key = "reset/poweroff"
      case .signal, .userQuit, .instructionStop: key = "stopped by the host"
      }
      outcomes[key, default: 0] += 1
      if case .watchdog(let why) = o {
        XCTAssertTrue(
          why.contains("instruction limit"), "case \(i) hung until the wall-clock watchdog: \(why)")
      }
    }
    print("random-code outcomes: \(outcomes.sorted { $0.key < $1.key })")
    XCTAssertEqual(outcomes.values.reduce(0, +), 200)
  }

  /// The same random code on the translator ends exactly as on the interpreter: same
  /// outcome, output and retired instructions (instruction-count time), in 32-bit and
  /// long-mode-like byte mixes.
  func testRandomCodeOnTheTranslatorMatchesTheInterpreter() throws {
    var rng = SeededRandom(seed: 0x5EED_0002)
    for i in 0..<200 {
      var code = (0..<512).map { _ in UInt8.random(in: 0...255, using: &rng) }
      if i % 4 == 0 {
        for j in stride(from: 0, to: code.count, by: 3) { code[j] = [0x48, 0x0F, 0x66][j % 3] }
      }
      var results: [(String, UInt64?, String)] = []
      for engine in [EngineKind.interpreter, .translator] {
        var c = MachineConfig(
          kernel: FlatMultiboot.image(code: code), kernelName: "fuzz\(i)", engine: engine)
        c.memorySize = 16 << 20
        c.maxInstructions = 20_000
        c.deterministic = true
        c.timeout = 30
        let console = ConsoleOutput(capturing: ())
        let m = try Machine(config: c, console: console)
        let o = m.run()
        results.append(("\(o)", m.statistics()["instructions"], console.capturedText))
      }
      XCTAssertEqual(results[0].0, results[1].0, "case \(i): outcome")
      XCTAssertEqual(results[0].1, results[1].1, "case \(i): instructions")
      XCTAssertEqual(results[0].2, results[1].2, "case \(i): output")
    }
  }
}
