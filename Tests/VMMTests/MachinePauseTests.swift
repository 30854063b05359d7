import Engine
import Foundation
import Synchronization
import TestSupport
import XCTest

@testable import VMM

/// Pause, resume and requests run on the vCPU thread (MachinePause.swift).
final class MachinePauseTests: XCTestCase {
  private func machine(_ code: [UInt8]) throws -> Machine {
    var c = MachineConfig(
      kernel: FlatMultiboot.image(code: code), kernelName: "t", engine: .interpreter)
    c.memorySize = 16 << 20
    c.timeout = 60
    return try Machine(config: c, console: ConsoleOutput(capturing: ()))
  }

  private func startRunning(_ m: Machine) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) let m = m
    Thread {
      _ = m.run()
      done.signal()
    }.start()
    return done
  }

  private func eax(_ m: Machine) throws -> UInt64 {
    try m.onVCPUThread { try m.cpu.getState().general.rax }
  }

  /// A paused vCPU retires nothing; resumed, it runs again; a host stop ends a paused VM.
  func testPauseHoldsTheCPUAndResumeContinues() throws {
    let m = try machine([0x40, 0xEB, 0xFD])  // 1: inc eax; jmp 1b
    XCTAssertFalse(m.pause(), "pause before run() starts")
    XCTAssertEqual(
      try eax(m), m.boot.initialState.general.rax,
      "before run(), the request runs on the caller's thread")
    let done = startRunning(m)
    Thread.sleep(forTimeInterval: 0.2)
    XCTAssertTrue(m.pause())
    XCTAssertTrue(m.isPaused)
    let a = try eax(m)
    Thread.sleep(forTimeInterval: 0.2)
    XCTAssertEqual(try eax(m), a, "the guest ran while paused")
    XCTAssertGreaterThan(a, 0)
    m.resume()
    Thread.sleep(forTimeInterval: 0.2)
    XCTAssertGreaterThan(try eax(m), a, "the guest did not run after resume")
    XCTAssertFalse(m.isPaused)
    XCTAssertEqual(
      done.wait(timeout: .now()), .timedOut, "the VM ended (a request waited for the watchdog)")
    XCTAssertTrue(m.pause())
    m.requestStop(.userQuit)
    XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "a host stop did not end a paused VM")
    XCTAssertFalse(m.pause(), "pause after the run loop ended")
  }

  /// A halted vCPU (sleeping on its doorbell) parks too, and requests reach it.
  func testPauseWakesAHaltedCPU() throws {
    let m = try machine([0xB8, 0x2A, 0, 0, 0, 0xFB, 0xF4, 0xEB, 0xFD])  // mov eax,42; sti; 1: hlt; jmp 1b
    m.setInputOpen(true)
    let done = startRunning(m)
    Thread.sleep(forTimeInterval: 0.2)
    XCTAssertTrue(m.pause())
    XCTAssertEqual(try eax(m), 42)
    m.resume()
    XCTAssertEqual(try eax(m), 42, "a request to a halted, running vCPU")
    XCTAssertEqual(
      done.wait(timeout: .now()), .timedOut, "the VM ended (a request waited for the watchdog)")
    m.requestStop(.userQuit)
    XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
  }

  /// A pause asked on the vCPU thread itself (from a request) does not deadlock:
  /// the loop parks right after the request.
  func testPauseFromTheVCPUThreadParksAfterTheRequest() throws {
    let m = try machine([0x40, 0xEB, 0xFD])
    let done = startRunning(m)
    Thread.sleep(forTimeInterval: 0.1)
    XCTAssertTrue(try m.onVCPUThread { m.pause() })
    let a = try eax(m)
    Thread.sleep(forTimeInterval: 0.1)
    XCTAssertEqual(try eax(m), a, "the guest ran after a pause from the vCPU thread")
    XCTAssertTrue(m.isPaused)
    m.requestStop(.userQuit)
    XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
  }

  /// Requests from several threads all run, one at a time, on the vCPU thread.
  func testRequestsFromManyThreadsAllRun() throws {
    let m = try machine([0x40, 0xEB, 0xFD])
    let done = startRunning(m)
    let group = DispatchGroup()
    let counter = Mutex(0)
    for _ in 0..<8 {
      DispatchQueue.global().async(group: group) {
        for _ in 0..<20 {
          _ = try? m.onVCPUThread { counter.withLock { $0 += 1 } }
        }
      }
    }
    XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
    XCTAssertEqual(counter.withLock { $0 }, 160)
    m.requestStop(.userQuit)
    XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
  }
}
