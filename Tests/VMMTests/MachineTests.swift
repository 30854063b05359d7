import Engine
import KVM
import TestSupport
import XCTest

@testable import VMM

/// The same machine-level behaviour, checked on every engine this host can run.
/// (XCTest on Linux does not discover inherited test methods, so each engine's
/// class below lists them.)
struct MachineScenarios {
  let engine: EngineKind

  func requireEngine() throws {
    if engine == .kvm {
      let host = KVMHost.probe()
      guard host.isUsable else {
        throw XCTSkip("KVM engine tests need /dev/kvm: \(host.openError ?? "unusable")")
      }
    }
  }

  func boot(
    _ kernel: [UInt8], name: String = "test", cmdline: String = "", timeout: Double? = 60,
    maxInstructions: UInt64? = nil
  ) throws -> (MachineOutcome, String) {
    try requireEngine()
    var c = MachineConfig(kernel: kernel, kernelName: name, engine: engine)
    c.commandLine = cmdline
    c.memorySize = 64 << 20
    c.timeout = timeout
    c.maxInstructions = maxInstructions
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    return (o, console.capturedText)
  }

  func helloPrintsGreetingAndExitsThroughDebugPort() throws {
    let (o, out) = try boot(try GuestImages.bytes("hello.elf"), name: "hello.elf", cmdline: "x=1")
    XCTAssertEqual(o, .debugExit(status: 1))
    XCTAssertEqual(o.exitStatus, 1)
    XCTAssertTrue(out.hasPrefix("Hello from SwiftVMM guest!\n"), out)
    XCTAssertTrue(out.contains("magic=0x2badb002"), out)
    XCTAssertTrue(out.contains("cmdline=\"hello.elf x=1\""), out)
  }

  func elf64HelloRunsInLongMode() throws {
    let (o, out) = try boot(try GuestImages.bytes("hello64.elf"))
    XCTAssertEqual(o, .debugExit(status: 1))
    XCTAssertTrue(out.contains("entry: long mode (elf64)"), out)
  }

  func exitsGuestCountsRoundTrips() throws {
    let (o, out) = try boot(try GuestImages.bytes("exits.elf"), cmdline: "exits.elf count=500")
    XCTAssertEqual(o, .debugExit(status: 1))
    XCTAssertTrue(out.contains("pio: 500 round trips"), out)
    XCTAssertTrue(out.contains("mmio: 500 round trips"), out)
    XCTAssertTrue(out.contains("exits: done"), out)
  }

  func debugExitValueBecomesStatus() throws {
    // mov eax, 5; out 0xf4, eax
    let (o, _) = try boot(FlatMultiboot.image(code: [0xB8, 5, 0, 0, 0, 0xE7, 0xF4]))
    XCTAssertEqual(o, .debugExit(status: 11))
  }

  func tripleFaultStopsTheVM() throws {
    // ud2 with an empty IDT: #UD -> #DF -> triple fault.
    let (o, _) = try boot(FlatMultiboot.image(code: [0x0F, 0x0B]))
    guard case .guestFailure(let why) = o else { return XCTFail("\(o)") }
    XCTAssertTrue(why.contains("triple fault"), why)
    XCTAssertEqual(o.exitStatus, 2)
  }

  func haltWithInterruptsDisabledIsReported() throws {
    let (o, _) = try boot(FlatMultiboot.image(code: [0xFA, 0xF4]))
    guard case .guestFailure(let why) = o else { return XCTFail("\(o)") }
    XCTAssertTrue(why.contains("halted"), why)
  }

  func runawayGuestIsStoppedByTheWatchdog() throws {
    let (o, _) = try boot(FlatMultiboot.image(code: [0xEB, 0xFE]), timeout: 1)
    guard case .watchdog = o else { return XCTFail("\(o)") }
    XCTAssertEqual(o.exitStatus, 4)
  }

  func unassignedPortsReadAllOnes() throws {
    // in al, 0x99 ; movzx eax, al ; out 0xf4, eax  -> status (0xFF << 1 | 1) & 0xFF
    let (o, _) = try boot(FlatMultiboot.image(code: [0xE4, 0x99, 0x0F, 0xB6, 0xC0, 0xE7, 0xF4]))
    XCTAssertEqual(o, .debugExit(status: Int32((0xFF << 1) | 1)))
  }

  /// PIT, UART and LAPIC-timer interrupts through the VMM's platform, taken with
  /// STI; HLT (so a halted vCPU must be woken by the platform's timers).
  func irqsGuestTakesTimerAndUARTInterrupts() throws {
    let (o, out) = try boot(try GuestImages.bytes("irqs.elf"), name: "irqs.elf", timeout: 60)
    XCTAssertEqual(o, .debugExit(status: 1), out)
    XCTAssertTrue(out.contains("pit: 10 ticks\nuart: THRE interrupt\nlapic timer: 5 ticks\n"), out)
    XCTAssertTrue(out.contains("PASS irqs"), out)
  }

  func i8042ResetStopsCleanly() throws {
    // mov al, 0xfe ; out 0x64, al ; jmp $
    let (o, _) = try boot(FlatMultiboot.image(code: [0xB0, 0xFE, 0xE6, 0x64, 0xEB, 0xFE]))
    XCTAssertEqual(o, .reset)
    XCTAssertEqual(o.exitStatus, 0)
  }
}

final class KVMMachineTests: XCTestCase {
  let s = MachineScenarios(engine: .kvm)
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
  func testIRQsGuestTakesTimerAndUARTInterrupts() throws {
    try s.irqsGuestTakesTimerAndUARTInterrupts()
  }
}

final class InterpreterMachineTests: XCTestCase {
  let s = MachineScenarios(engine: .interpreter)
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
  func testIRQsGuestTakesTimerAndUARTInterrupts() throws {
    try s.irqsGuestTakesTimerAndUARTInterrupts()
  }
}

final class DeterministicMachineTests: XCTestCase {
  func run(_ guest: String, cmdline: String) throws -> (MachineOutcome, UInt64, String) {
    var c = MachineConfig(
      kernel: try GuestImages.bytes(guest), kernelName: guest, engine: .interpreter)
    c.commandLine = cmdline
    c.memorySize = 64 << 20
    c.deterministic = true
    c.timeout = 120
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    return (o, m.statistics()["instructions"] ?? 0, console.capturedText)
  }

  func testSameGuestRetiresSameInstructionsTwice() throws {
    let a = try run("exits.elf", cmdline: "count=300")
    let b = try run("exits.elf", cmdline: "count=300")
    XCTAssertEqual(a.0, .debugExit(status: 1))
    XCTAssertEqual(a.1, b.1)
    XCTAssertEqual(a.2, b.2, "instruction-count time: even the TSC figures repeat")
  }

  func testKVMEngineRefusesLinuxOnKVMPVM() throws {
    let host = KVMHost.probe()
    guard host.isUsable, host.kind == .pvm else {
      throw XCTSkip("checks the KVM-PVM refusal; this host's KVM is \(host.kind.rawValue)")
    }
    // A bzImage header is enough: the refusal comes before the engine starts.
    var kernel = [UInt8](repeating: 0, count: 0x1000)
    kernel[0x1FE] = 0x55
    kernel[0x1FF] = 0xAA
    kernel.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
    let c = MachineConfig(kernel: kernel, kernelName: "bzImage", engine: .kvm)
    XCTAssertThrowsError(try Machine(config: c, console: ConsoleOutput(capturing: ()))) {
      XCTAssertEqual("\($0)", KVMPlatformLimits.linuxOnPVM)
    }
  }

  func testKVMEngineRefusesDeterministicMode() throws {
    var c = MachineConfig(kernel: try GuestImages.bytes("hello.elf"), kernelName: "h", engine: .kvm)
    c.deterministic = true
    XCTAssertThrowsError(try Machine(config: c, console: ConsoleOutput(capturing: ()))) {
      XCTAssertTrue("\($0)".contains("--deterministic needs a software engine"), "\($0)")
    }
  }
}
