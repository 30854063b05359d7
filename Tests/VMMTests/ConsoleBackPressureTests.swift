import Engine
import Foundation
import Glibc
import TestSupport
import XCTest

@testable import Devices
@testable import VMM

/// Console input is bounded with back-pressure, a reset reboots, and a failed
/// VM can show its registers.
final class ConsoleBackPressureTests: XCTestCase {
  func machineConfig(_ code: [UInt8]) -> MachineConfig {
    var c = MachineConfig(
      kernel: FlatMultiboot.image(code: code), kernelName: "t", engine: .interpreter)
    c.memorySize = 16 << 20
    c.timeout = 60
    return c
  }

  /// A guest that never reads: the reader blocks once the queue and the UART
  /// are full, holds no more than that, and gets the rest back on stop.
  func testGuestThatNeverReadsBlocksTheReader() throws {
    let m = try Machine(
      config: machineConfig([0xEB, 0xFE]), console: ConsoleOutput(capturing: ()))  // jmp $
    let total = 20_000
    let fed = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var leftover = -1
    Thread {
      leftover = m.feedInput([UInt8](repeating: 0x61, count: total)).count
      fed.signal()
    }.start()
    DispatchQueue.global().asyncAfter(deadline: .now() + 2) { m.requestStop(.userQuit) }
    XCTAssertEqual(m.run(), .userQuit)
    XCTAssertEqual(fed.wait(timeout: .now() + 10), .success, "the reader stayed blocked")
    // Taken: the queue, the UART's backlog, and its one-byte holding register.
    XCTAssertEqual(leftover, total - Machine.inputQueueLimit - UART16550.hostBacklogLimit - 1)
  }

  /// A guest that reads gets every byte, in order, however much is pasted:
  /// far more than the queue and the UART hold together.
  func testPasteLosesNothing() throws {
    let console = ConsoleOutput(capturing: ())
    var c = machineConfig([])
    c.kernel = try GuestImages.bytes("echo.elf")
    c.kernelName = "echo.elf"
    let echo = try Machine(config: c, console: console)
    var g = SeededRandom(seed: 8)
    let input = (0..<12_000).map { _ in
      let b = UInt8.random(in: 0x20...0x7D, using: &g)  // no '~'
      return b == UInt8(ascii: "!") ? UInt8(ascii: "?") : b
    }
    var fnv: UInt32 = 2_166_136_261
    for b in input { fnv = (fnv ^ UInt32(b)) &* 16_777_619 }
    // The guest's UART set-up clears the receive FIFO (FCR), dropping what
    // arrived before it: the leading "!" absorbs that.
    Thread { echo.feedInput(Array("!".utf8) + input + Array("!~".utf8)) }.start()
    XCTAssertEqual(echo.run(), .debugExit(status: 1))
    let hex = String(fnv, radix: 16)
    let want = "count=\(input.count) fnv=" + String(repeating: "0", count: 8 - hex.count) + hex
    XCTAssertTrue(console.capturedText.contains(want), "want \(want), got \(console.capturedText)")
  }

  /// i8042 reset: prints "B" then resets. With reboot the machine starts
  /// again from the kernel; with --no-reboot the reset ends the run.
  static let resetGuest: [UInt8] = [
    0x66, 0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
    0xB0, 0x42, 0xEE,  // mov al, 'B' ; out dx, al
    0xB0, 0xFE, 0xE6, 0x64,  // mov al, 0xfe ; out 0x64, al
    0xEB, 0xFE,  // jmp $
  ]

  func testResetRebootsTheMachine() throws {
    let console = ConsoleOutput(capturing: ())
    let s = try VMSession(config: machineConfig(Self.resetGuest), console: console, reboot: true)
    let first = s.machine
    XCTAssertEqual(s.run(shouldReboot: { $0 < 3 }), .reset)
    XCTAssertEqual(s.boots, 3)
    XCTAssertEqual(console.capturedText, "BBB")
    XCTAssertFalse(first === s.machine, "a reboot builds a fresh machine")
  }

  func testNoRebootEndsOnReset() throws {
    let console = ConsoleOutput(capturing: ())
    let s = try VMSession(config: machineConfig(Self.resetGuest), console: console, reboot: false)
    let o = s.run()
    XCTAssertEqual(o, .reset)
    XCTAssertEqual(o.exitStatus, 0)
    XCTAssertEqual(s.boots, 1)
    XCTAssertEqual(console.capturedText, "B")
  }

  /// A stop from the host during a reboot loop ends it.
  func testStopEndsARebootLoop() throws {
    let s = try VMSession(
      config: machineConfig(Self.resetGuest), console: ConsoleOutput(capturing: ()), reboot: true)
    DispatchQueue.global().asyncAfter(deadline: .now() + 1) { s.requestStop(.signal(SIGTERM)) }
    XCTAssertEqual(s.run(), .signal(SIGTERM))
    XCTAssertGreaterThan(s.boots, 1)
  }

  /// ud2 with no usable IDT: triple fault. The dump says where and why.
  func testFailureDumpShowsRegistersAndLastException() throws {
    let m = try Machine(config: machineConfig([0x0F, 0x0B]), console: ConsoleOutput(capturing: ()))
    let o = m.run()
    guard case .guestFailure = o else { return XCTFail("\(o)") }
    XCTAssertTrue(o.printsRegisters)
    let dump = try XCTUnwrap(m.registerDump())
    XCTAssertTrue(dump.contains("CR0="), dump)
    XCTAssertTrue(dump.contains("CR3="), dump)
    XCTAssertTrue(dump.contains("CR4="), dump)
    XCTAssertTrue(dump.contains("RSP="), dump)
    XCTAssertTrue(dump.contains("last exception: #UD at RIP 0x100020"), dump)
  }
}
