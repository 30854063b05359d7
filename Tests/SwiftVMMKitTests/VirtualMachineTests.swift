import Foundation
import SwiftVMMKit
import TestSupport
import XCTest

/// The library's public API, used the way a Swift program embeds SwiftVMM.
final class VirtualMachineTests: XCTestCase {
  final class Console: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    func append(_ b: [UInt8]) {
      lock.lock()
      bytes += b
      lock.unlock()
    }
    var text: String {
      lock.lock()
      defer { lock.unlock() }
      return String(decoding: bytes, as: UTF8.self)
    }
    func wait(for s: String, timeout: Double = 60) -> Bool {
      let end = Date() + timeout
      while Date() < end {
        if text.contains(s) { return true }
        usleep(10_000)
      }
      return false
    }
  }

  func echo(_ console: Console, engine: VirtualMachine.Engine = .interpreter) throws
    -> VirtualMachine
  {
    var c = VirtualMachine.Configuration(kernelPath: try GuestImages.path("echo.elf"))
    c.memoryMiB = 32
    c.engine = engine
    c.timeout = 120
    return try VirtualMachine(c) { console.append($0) }
  }

  func testDemoGuestGreets() throws {
    let console = Console()
    let vm = try VirtualMachine(.init()) { console.append($0) }
    let outcome = vm.run()
    XCTAssertEqual(outcome.exitStatus, 1, console.text)
    XCTAssertTrue(console.text.hasPrefix("Hello from SwiftVMM guest!\n"), console.text)
    XCTAssertGreaterThan(vm.counters["vmm.exits.io"] ?? 0, 0)
    // After the run the caller owns the machine: it can be saved.
    let path = NSTemporaryDirectory() + "swiftvmm-kit-\(UUID().uuidString).snap"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try vm.snapshot(to: path)
    let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    XCTAssertGreaterThan(size, 0)
  }

  func testConsolePauseResume() throws {
    let console = Console()
    let vm = try echo(console)
    vm.start()
    XCTAssertTrue(console.wait(for: "echo ready"), console.text)
    vm.writeConsole("abc!")
    XCTAssertTrue(console.wait(for: "count=3 "), console.text)

    XCTAssertTrue(vm.pause())
    XCTAssertTrue(vm.isPaused)
    let before = vm.counters["instructions"]
    XCTAssertNotNil(before)
    usleep(100_000)
    XCTAssertEqual(vm.counters["instructions"], before, "a paused guest retires nothing")
    vm.resume()
    usleep(100_000)
    XCTAssertGreaterThan(vm.counters["instructions"] ?? 0, before ?? .max)

    vm.writeConsole("~")
    XCTAssertEqual(vm.wait().exitStatus, 1, console.text)
  }

  func testStopEndsARunningGuest() throws {
    let console = Console()
    let vm = try echo(console)
    vm.start()
    XCTAssertTrue(console.wait(for: "echo ready"), console.text)
    vm.pause()
    vm.stop()  // also from a pause
    let o = vm.wait()
    XCTAssertEqual(o.exitStatus, 0)
    XCTAssertEqual(o.message, "stopped by the program")
  }

  func testConfigurationErrorsNameTheField() throws {
    var c = VirtualMachine.Configuration()
    c.memoryMiB = 1
    XCTAssertThrowsError(try VirtualMachine(c)) {
      XCTAssertTrue("\($0)".hasPrefix("machine-config.mem_size_mib: "), "\($0)")
    }
    c = .init(kernelPath: "/nonexistent/vmlinuz")
    XCTAssertThrowsError(try VirtualMachine(c)) {
      XCTAssertEqual(
        "\($0)", "boot-source.kernel_image_path: '/nonexistent/vmlinuz' does not exist")
    }
    let file = NSTemporaryDirectory() + "swiftvmm-kit-\(UUID().uuidString).json"
    try Data(#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 32, "smt": "no"}}"#.utf8)
      .write(to: URL(fileURLWithPath: file))
    defer { try? FileManager.default.removeItem(atPath: file) }
    XCTAssertThrowsError(try VirtualMachine.Configuration(configFile: file)) {
      XCTAssertEqual("\($0)", "\(file): machine-config.smt: expected true or false, found a string")
    }
  }

  func testConfigFileBoots() throws {
    let file = NSTemporaryDirectory() + "swiftvmm-kit-\(UUID().uuidString).json"
    try Data(
      #"""
      {"boot-source": {"kernel_image_path": "\#(try GuestImages.path("hello64.elf"))"},
       "machine-config": {"vcpu_count": 1, "mem_size_mib": 32},
       "swiftvmm": {"engine": "translator", "timeout": 60}}
      """#.utf8
    ).write(to: URL(fileURLWithPath: file))
    defer { try? FileManager.default.removeItem(atPath: file) }
    let console = Console()
    let vm = try VirtualMachine(try .init(configFile: file)) { console.append($0) }
    XCTAssertEqual(vm.run().exitStatus, 1, console.text)
    XCTAssertTrue(console.text.contains("Hello from SwiftVMM guest!"), console.text)
  }

  /// A deterministic run stopped at an exact instruction, saved, and restored on the
  /// translator, says the same as a run that never stopped.
  func testRestoreContinuesWhereTheSnapshotStopped() throws {
    var c = VirtualMachine.Configuration()
    c.memoryMiB = 32
    c.engine = .interpreter
    c.deterministic = true
    let whole = Console()
    XCTAssertEqual(try VirtualMachine(c) { whole.append($0) }.run().exitStatus, 1, whole.text)

    let first = Console()
    let vm = try VirtualMachine(c) { first.append($0) }
    vm.stopAtInstruction = 5_000
    let stopped = vm.run()
    XCTAssertEqual(stopped.stoppedAtInstruction, 5_000)
    XCTAssertEqual(stopped.exitStatus, 6)
    let path = NSTemporaryDirectory() + "swiftvmm-kit-\(UUID().uuidString).snap"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let info = try vm.snapshot(to: path)
    XCTAssertEqual(info.path, path)
    XCTAssertGreaterThan(info.pagesStored, 0)
    XCTAssertGreaterThan(info.bytes, info.pagesStored * 4096)
    XCTAssertTrue(String(decoding: vm.statisticsReport(), as: UTF8.self).contains("instructions"))

    let rest = Console()
    let restored = try VirtualMachine(
      restoring: path, engine: .translator, console: .callback { rest.append($0) })
    XCTAssertEqual(restored.engineName, "translator")
    XCTAssertTrue(restored.isDeterministic)
    XCTAssertEqual(restored.run().exitStatus, 1, rest.text)
    XCTAssertEqual(first.text + rest.text, whole.text)

    let junk = path + ".junk"
    FileManager.default.createFile(atPath: junk, contents: Data(repeating: 1, count: 100))
    defer { try? FileManager.default.removeItem(atPath: junk) }
    XCTAssertThrowsError(try VirtualMachine(restoring: junk, console: .callback { _ in }))
  }

  /// How a host program ends a run sets the exit status and message, as `swiftvmm run`'s.
  func testStopReasonsSetTheOutcome() throws {
    for (reason, status, message) in [
      (VirtualMachine.StopReason.signal(15), Int32(143), "stopped by SIGTERM"),
      (.consoleQuit, 0, "quit from the console"),
    ] {
      let console = Console()
      let vm = try echo(console)
      vm.start()
      XCTAssertTrue(console.wait(for: "echo ready"), console.text)
      vm.stop(reason)
      let o = vm.wait()
      XCTAssertEqual(o.exitStatus, status)
      XCTAssertEqual(o.message, message)
      XCTAssertNil(o.registerDump)
    }
  }

  /// `startPaused()`: nothing runs until `resume()`.
  func testStartPausedWaitsForResume() throws {
    let console = Console()
    let vm = try echo(console)
    vm.startPaused()
    vm.start()
    usleep(300_000)
    XCTAssertEqual(console.text, "", "a VM started paused runs nothing")
    XCTAssertEqual(vm.counters["instructions"] ?? 0, 0)
    vm.resume()
    XCTAssertTrue(console.wait(for: "echo ready"), console.text)
    vm.stop()
    XCTAssertEqual(vm.wait().exitStatus, 0)
  }

  /// The MMU mode, CPUID policy and devices reach the machine, checked as the command
  /// line's are (errors name the field).
  func testMachineOptions() throws {
    var c = VirtualMachine.Configuration()
    c.memoryMiB = 32
    c.engine = .interpreter
    c.mmu = .shadow
    c.cpuidPolicy = "minimal"
    c.entropy = true
    c.network = .user(hostForwards: [])
    let console = Console()
    let vm = try VirtualMachine(c) { console.append($0) }
    XCTAssertEqual(vm.run().exitStatus, 1, console.text)
    XCTAssertTrue(console.text.hasPrefix("Hello from SwiftVMM guest!"), console.text)
    XCTAssertTrue(vm.counters.keys.contains { $0.hasPrefix("mmu.shadow.") }, "\(vm.counters)")

    c.cpuidPolicy = "/nonexistent/policy.json"
    XCTAssertThrowsError(try VirtualMachine(c)) {
      XCTAssertTrue("\($0)".hasPrefix("swiftvmm.cpuid: "), "\($0)")
    }
    c.cpuidPolicy = nil
    c.network = .user(hostForwards: ["tcp:127.0.0.1:notaport-:22"])
    XCTAssertThrowsError(try VirtualMachine(c)) {
      XCTAssertTrue("\($0)".hasPrefix("swiftvmm.net: "), "\($0)")
    }
    c.network = .none
    c.engine = .kvm
    XCTAssertThrowsError(try VirtualMachine(c), "an MMU mode needs a software engine")
  }

  /// The package's example program, as CI runs it.
  func testExampleProgramRuns() throws {
    let exe = URL(fileURLWithPath: GuestImages.swiftvmmBinary).deletingLastPathComponent()
      .appendingPathComponent("example-boot").path
    guard FileManager.default.isExecutableFile(atPath: exe) else {
      throw XCTSkip("example-boot not built next to the test runner at \(exe)")
    }
    let r = try GuestImages.run(exe, ["--engine", "interpreter"], timeout: 120)
    XCTAssertEqual(r.status, 0, r.output)
    XCTAssertTrue(r.output.hasPrefix("Hello from SwiftVMM guest!\n"), r.output)
    XCTAssertTrue(r.output.contains("guest ended: exit status 1"), r.output)
  }
}
