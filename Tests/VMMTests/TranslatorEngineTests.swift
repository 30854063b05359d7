import Engine
import TestSupport
import XCTest

@testable import VMM

/// `--engine translator` runs every guest here exactly as the interpreter does: the same
/// output, outcome and (in instruction-count time) the same retired-instruction count,
/// which also pins interrupts and timer deadlines to the same instructions.
final class TranslatorEngineTests: XCTestCase {
  func run(_ guest: String, _ engine: EngineKind, cmdline: String) throws
    -> (MachineOutcome, [String: UInt64], String)
  {
    var c = MachineConfig(kernel: try GuestImages.bytes(guest), kernelName: guest, engine: engine)
    c.commandLine = cmdline
    c.memorySize = 128 << 20
    c.deterministic = true
    c.timeout = 300
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    return (o, m.statistics(), console.capturedText)
  }

  func compare(_ guest: String, cmdline: String = "", minTranslated: UInt64 = 0) throws {
    let a = try run(guest, .interpreter, cmdline: cmdline)
    let b = try run(guest, .translator, cmdline: cmdline)
    XCTAssertEqual(a.0, b.0, "\(guest): outcome")
    XCTAssertEqual(a.2, b.2, "\(guest): output")
    XCTAssertEqual(a.1["instructions"], b.1["instructions"], "\(guest): instructions")
    XCTAssertGreaterThanOrEqual(
      b.1["translator.block_instructions"] ?? 0, minTranslated, "\(guest): translated work")
  }

  func testHello() throws { try compare("hello.elf") }
  func testHello64() throws { try compare("hello64.elf") }
  func testExitsWithTimerInterrupts() throws { try compare("exits.elf", cmdline: "count=300") }
  func testModes() throws { try compare("modes.elf") }
  func testExceptions() throws { try compare("exceptions.elf") }
  func testPaging() throws { try compare("paging.elf") }
  func testSoftint() throws { try compare("softint.elf") }
  func testSyscall() throws { try compare("syscall.elf") }
  func testCPUID() throws { try compare("cpuid.elf") }
  func testBenchLoop() throws {
    try compare("bench_loop.elf", cmdline: "iters=100000", minTranslated: 900_000)
  }
  func testBenchSort() throws { try compare("bench_sort.elf", cmdline: "n=4096 rounds=1") }

  func testEngineIsNamedInStatisticsAndInfo() throws {
    var c = MachineConfig(
      kernel: try GuestImages.bytes("hello.elf"), kernelName: "hello", engine: .translator)
    c.memorySize = 64 << 20
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    _ = m.run()
    XCTAssertNotNil(m.statistics()["translator.translations"])
  }
}

/// The machine-level scenarios every engine passes, on the translator.
final class TranslatorMachineTests: XCTestCase {
  let s = MachineScenarios(engine: .translator)
  func testHelloPrintsGreetingAndExitsThroughDebugPort() throws {
    try s.helloPrintsGreetingAndExitsThroughDebugPort()
  }
  func testELF64HelloRunsInLongMode() throws { try s.elf64HelloRunsInLongMode() }
  func testExitsGuestCountsRoundTrips() throws { try s.exitsGuestCountsRoundTrips() }
  func testDebugExitValueBecomesStatus() throws { try s.debugExitValueBecomesStatus() }
  func testTripleFaultStopsTheVM() throws { try s.tripleFaultStopsTheVM() }
  func testHaltWithInterruptsDisabledIsReported() throws {
    try s.haltWithInterruptsDisabledIsReported()
  }
  func testRunawayGuestIsStoppedByTheWatchdog() throws {
    try s.runawayGuestIsStoppedByTheWatchdog()
  }
  func testUnassignedPortsReadAllOnes() throws { try s.unassignedPortsReadAllOnes() }
  func testI8042ResetStopsCleanly() throws { try s.i8042ResetStopsCleanly() }
}
