import Engine
import Foundation
import TestSupport
import XCTest

@testable import Interpreter

final class GuestTests: XCTestCase {
  func runGuest(_ name: String, cmdline: String = "", maxInstructions: UInt64 = 2_000_000_000)
    throws -> TestMachine
  {
    // Builds the guests when missing; a failed build fails the test.
    let path = try GuestImages.path(name + ".elf")
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
    let m = try runGuest("hello", cmdline: "hello.elf")
    XCTAssertTrue(m.serial.contains("Hello from SwiftVMM guest!"))
    XCTAssertTrue(m.serial.contains("multiboot: magic=0x2badb002"), m.serial)
  }

  func testCPUID() throws {
    let m = try runGuest("cpuid")
    XCTAssertTrue(m.serial.contains("cpuid: done"), m.serial)
  }

  func testExits() throws {
    let m = try runGuest("exits", cmdline: "count=100")
    XCTAssertTrue(m.serial.contains("exits: done"), m.serial)
  }

  func testExceptions() throws {
    let m = try runGuest("exceptions")
    XCTAssertTrue(m.serial.contains("PASS exceptions"), m.serial)
  }

  func testIDTIST() throws {
    let m = try runGuest("idt_ist")
    XCTAssertTrue(m.serial.contains("PASS idt_ist"), m.serial)
  }

  func testPaging() throws {
    let m = try runGuest("paging")
    XCTAssertTrue(m.serial.contains("PASS paging"), m.serial)
  }

  func testSyscall() throws {
    let m = try runGuest("syscall")
    XCTAssertTrue(m.serial.contains("PASS syscall"), m.serial)
  }

  func testSoftint() throws {
    let m = try runGuest("softint")
    XCTAssertTrue(m.serial.contains("PASS softint"), m.serial)
  }

  func testModes() throws {
    let m = try runGuest("modes")
    XCTAssertTrue(m.serial.contains("PASS modes"), m.serial)
  }

  /// 32/16-bit protected-mode segment checks; the cases QEMU cannot judge are
  /// checked by the guest against the SDM (QEMUCrossCheckTests compares the rest).
  func testSegments() throws {
    let m = try runGuest("segments")
    XCTAssertTrue(m.serial.hasSuffix("segments: done\n"), m.serial)
    XCTAssertFalse(m.serial.contains("FAIL"), m.serial)
  }

  /// A small run of a scalable benchmark guest (timings: `swiftvmm bench cpu`).
  func testBenchmarksSmall() throws {
    for b in ["bench_loop"] {
      let m = try runGuest(
        b, cmdline: "div=20000 n=4096 rounds=1 steps=10000 iters=100000 repeat=1")
      XCTAssertTrue(m.serial.contains("result="), "\(b): \(m.serial)")
    }
  }
}

/// Every other multiboot guest in Guests/build must exit 0 (PASS) on the interpreter.
final class AllGuestsTests: XCTestCase {
  func testEveryMultibootGuest() throws {
    _ = try GuestImages.path("hello.elf")  // builds the guests when missing
    let dir = GuestImages.buildDir.path
    let names = try FileManager.default.contentsOfDirectory(atPath: dir)
    XCTAssertGreaterThan(names.count, 10, "Guests/build holds too few guests: \(names)")
    // boot64 is a shim; pv_mmu needs the VMM's hypercalls; virtio needs the VMM's PCI
    // devices (VirtioGuestTests runs it through a Machine); echo waits for typed input
    // (TerminalConsoleTests drive it); smp and irqs need the VMM's PIC, PIT and local
    // APICs (SMPGuestTests, MachineTests).
    let skip: Set<String> = ["boot64", "pv_mmu", "virtio", "echo", "smp", "irqs"]
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
