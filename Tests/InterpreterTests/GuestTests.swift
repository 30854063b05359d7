import Engine
import Foundation
import XCTest

@testable import Interpreter

final class GuestTests: XCTestCase {
  func runGuest(_ name: String, cmdline: String = "", maxInstructions: UInt64 = 2_000_000_000)
    throws -> TestMachine?
  {
    let path = TestMachine.guestDir + "/" + name + ".elf"
    guard FileManager.default.fileExists(atPath: path) else {
      print("SKIP \(name): \(path) not built (run Guests/build.sh)")
      return nil
    }
    var o = InterpreterOptions()
    o.maxInstructions = maxInstructions
    let m = try TestMachine(ramMiB: 256, options: o)
    try m.bootMultiboot(path: path, cmdline: cmdline)
    let stop = try m.run()
    if stop != .debugExit(0) {
      print("guest \(name) output:\n\(m.serial)\nstop: \(stop)")
    }
    XCTAssertEqual(stop, .debugExit(0), "\(name): \(m.serial.suffix(400))")
    return m
  }

  func testHello() throws {
    guard let m = try runGuest("hello", cmdline: "hello.elf") else { return }
    XCTAssertTrue(m.serial.contains("Hello from SwiftVMM guest!"))
    XCTAssertTrue(m.serial.contains("multiboot: magic=0x2badb002"), m.serial)
  }

  func testCPUID() throws {
    guard let m = try runGuest("cpuid") else { return }
    XCTAssertTrue(m.serial.contains("cpuid: done"), m.serial)
  }

  func testExits() throws {
    guard let m = try runGuest("exits", cmdline: "count=100") else { return }
    XCTAssertTrue(m.serial.contains("exits: done"), m.serial)
  }

  func testExceptions() throws {
    guard let m = try runGuest("exceptions") else { return }
    XCTAssertTrue(m.serial.contains("PASS exceptions"), m.serial)
  }

  func testIDTIST() throws {
    guard let m = try runGuest("idt_ist") else { return }
    XCTAssertTrue(m.serial.contains("PASS idt_ist"), m.serial)
  }

  func testPaging() throws {
    guard let m = try runGuest("paging") else { return }
    XCTAssertTrue(m.serial.contains("PASS paging"), m.serial)
  }

  func testSyscall() throws {
    guard let m = try runGuest("syscall") else { return }
    XCTAssertTrue(m.serial.contains("PASS syscall"), m.serial)
  }

  func testSoftint() throws {
    guard let m = try runGuest("softint") else { return }
    XCTAssertTrue(m.serial.contains("PASS softint"), m.serial)
  }

  func testModes() throws {
    guard let m = try runGuest("modes") else { return }
    XCTAssertTrue(m.serial.contains("PASS modes"), m.serial)
  }

  /// Small runs of the scalable benchmarks (all five run in release via BenchTests).
  func testBenchmarksSmall() throws {
    for b in ["bench_loop"] {
      guard
        let m = try runGuest(
          b, cmdline: "div=20000 n=4096 rounds=1 steps=10000 iters=100000 repeat=1")
      else { return }
      XCTAssertTrue(m.serial.contains("result="), "\(b): \(m.serial)")
    }
  }
}

/// Every other multiboot guest in Guests/build must exit 0 (PASS) on the interpreter.
final class AllGuestsTests: XCTestCase {
  func testEveryMultibootGuest() throws {
    let dir = TestMachine.guestDir
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
      print("SKIP: \(dir) missing (run Guests/build.sh)")
      return
    }
    let skip: Set<String> = ["boot64", "pv_mmu"]  // boot64 is a shim; pv_mmu needs the VMM's hypercalls
    for f in names.sorted() where f.hasSuffix(".elf") && !f.hasSuffix("64.elf") {
      let name = String(f.dropLast(4))
      if skip.contains(name) || name.hasPrefix("bench_") { continue }
      var o = InterpreterOptions()
      o.maxInstructions = 3_000_000_000
      let m = try TestMachine(ramMiB: 512, options: o)
      try m.bootMultiboot(path: dir + "/" + f, cmdline: f)
      let stop = try m.run()
      XCTAssertEqual(stop, .debugExit(0), "\(name): \(m.serial.suffix(600))")
      if stop != .debugExit(0) { print(m.serial) }
      print("guest \(name): \(stop) last line: \(m.serial.split(separator: "\n").last ?? "")")
    }
  }
}
