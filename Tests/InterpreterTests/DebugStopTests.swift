import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// The engine's debug stops (what the gdb stub builds on): breakpoints before an
/// instruction, single-step across exits, and data watchpoints through the TLB.
final class DebugStopTests: XCTestCase {
  // mov eax,1 ; mov [0x20000],eax ; out 0x80,al ; mov ebx,[0x20000] ; hlt
  static let code: [UInt8] = [
    0xB8, 0x01, 0x00, 0x00, 0x00, 0x89, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00, 0xE6, 0x80, 0x8B, 0x1C,
    0x25, 0x00, 0x00, 0x02, 0x00, 0xF4,
  ]

  private func machine(engine translator: Bool = false) throws -> TestMachine {
    let m = try TestMachine(ramMiB: 16)
    try m.load(Self.code, at: 0x10000)
    try m.setLongMode(rip: 0x10000)
    if translator { try m.cpu.enableTranslation() }
    return m
  }

  private func rip(_ m: TestMachine) throws -> UInt64 { try m.cpu.getState().general.rip }

  func testBreakpointStopsBeforeTheInstructionAndResumesPastIt() throws {
    let m = try machine()
    try m.cpu.setDebugSettings(DebugSettings(breakpoints: [0x10005]))
    XCTAssertEqual(try m.cpu.run(), .debug(.breakpoint(rip: 0x10005)))
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x20000), as: UInt32.self), 0)
    XCTAssertEqual(try m.cpu.getState().general.rax, 1)
    // Run again: the instruction at the breakpoint executes (it does not stop again there).
    guard case .portIO(let io) = try m.cpu.run() else { return XCTFail("expected OUT") }
    XCTAssertEqual(io.port, 0x80)
    XCTAssertEqual(try m.cpu.run(), .halt)
  }

  func testSingleStepCountsAnInstructionWhoseExitWentFirst() throws {
    let m = try machine()
    try m.cpu.setDebugSettings(DebugSettings(singleStep: true))
    XCTAssertEqual(try m.cpu.run(), .debug(.step))
    XCTAssertEqual(try rip(m), 0x10005)
    XCTAssertEqual(try m.cpu.run(), .debug(.step))
    XCTAssertEqual(try rip(m), 0x1000C)
    guard case .portIO = try m.cpu.run() else { return XCTFail("expected OUT") }
    // The OUT was the step: the next run reports it without executing another instruction.
    XCTAssertEqual(try m.cpu.run(), .debug(.step))
    XCTAssertEqual(try rip(m), 0x1000E)
  }

  func testWatchpointsStopAfterTheAccessEvenWhenThePageWasCached() throws {
    let m = try machine()
    let w = Watchpoint(address: 0x20000, length: 4, kind: .write)
    try m.cpu.setDebugSettings(DebugSettings(watchpoints: [w]))
    XCTAssertEqual(try m.cpu.run(), .debug(.watchpoint(w, address: 0x20000)))
    XCTAssertEqual(try rip(m), 0x1000C, "reported after the store, as a trap")
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x20000), as: UInt32.self), 1)
    // Without stops the page is cached again; a read watchpoint set now must still fire.
    try m.cpu.setDebugSettings(DebugSettings())
    guard case .portIO = try m.cpu.run() else { return XCTFail("expected OUT") }
    let r = Watchpoint(address: 0x20002, length: 1, kind: .read)
    try m.cpu.setDebugSettings(DebugSettings(watchpoints: [r]))
    XCTAssertEqual(try m.cpu.run(), .debug(.watchpoint(r, address: 0x20002)))
    XCTAssertEqual(try rip(m), 0x10015)
    try m.cpu.setDebugSettings(DebugSettings())
    XCTAssertEqual(try m.cpu.run(), .halt)
  }

  func testTranslatorEngineStopsAtBreakpointsToo() throws {
    let m = try machine(engine: true)
    try m.cpu.setDebugSettings(DebugSettings(breakpoints: [0x1000E]))
    guard case .portIO = try m.cpu.run() else { return XCTFail("expected OUT") }
    XCTAssertEqual(try m.cpu.run(), .debug(.breakpoint(rip: 0x1000E)))
  }

  /// A watched page stays out of the TLB: a second access to it is seen too.
  func testSecondAccessToAWatchedPageIsSeen() throws {
    let m = try TestMachine(ramMiB: 16)
    // mov eax,[0x20000] ; mov ebx,[0x20004] ; hlt
    try m.load([0x8B, 0x04, 0x25, 0, 0, 2, 0, 0x8B, 0x1C, 0x25, 4, 0, 2, 0, 0xF4], at: 0x10000)
    try m.setLongMode(rip: 0x10000)
    let w = Watchpoint(address: 0x20004, length: 4, kind: .access)
    try m.cpu.setDebugSettings(DebugSettings(watchpoints: [w]))
    XCTAssertEqual(try m.cpu.run(), .debug(.watchpoint(w, address: 0x20004)))
    XCTAssertEqual(try rip(m), 0x1000E)
  }
}
