import Foundation
import TestSupport
import XCTest

/// Debian's gdb, in batch mode, against `swiftvmm run --gdb` and the gdbtarget guest
/// built with symbols (`Guests/build.sh --debug`).
final class GDBTests: XCTestCase {
  static let gdb = "/usr/bin/gdb"
  private static let lock = NSLock()

  /// `Guests/build/debug/gdbtarget64.elf`, built once if missing.
  private func debugGuest() throws -> String {
    let p = GuestImages.buildDir.appendingPathComponent("debug/gdbtarget64.elf").path
    GDBTests.lock.lock()
    defer { GDBTests.lock.unlock() }
    if !FileManager.default.fileExists(atPath: p) {
      let r = try GuestImages.run(
        "/bin/bash",
        [GuestImages.repoRoot.appendingPathComponent("Guests/build.sh").path, "--debug"])
      XCTAssertEqual(r.status, 0, r.output)
    }
    return p
  }

  private func requireGDB() throws {
    guard FileManager.default.isExecutableFile(atPath: GDBTests.gdb) else {
      throw XCTSkip("gdb is not installed (.ci/run installs Debian's gdb)")
    }
    try requireSwiftVMMBinary()
  }

  /// Starts `swiftvmm run` with `--gdb unix:SOCKET --gdb-wait`, runs gdb with `commands`,
  /// and returns gdb's output, the VM's output and the VM's exit status.
  private func session(engine: String, commands: [String]) throws -> (
    gdb: String, vm: String, status: Int32
  ) {
    try requireGDB()
    let guest = try debugGuest()
    let sock = NSTemporaryDirectory() + "swiftvmm-gdb-\(UUID().uuidString.prefix(8)).sock"
    let vm = Process()
    vm.executableURL = URL(fileURLWithPath: CLITests.binary)
    vm.arguments = [
      "run", "--engine", engine, "--gdb", "unix:" + sock, "--gdb-wait", "--timeout", "60",
      "--kernel", guest,
    ]
    let vmOut = Pipe()
    vm.standardOutput = vmOut
    vm.standardError = vmOut
    vm.standardInput = FileHandle.nullDevice
    try vm.run()
    defer {
      if vm.isRunning { vm.terminate() }
      try? FileManager.default.removeItem(atPath: sock)
    }
    for _ in 0..<500 where !FileManager.default.fileExists(atPath: sock) { usleep(10_000) }
    var args = ["-nx", "-batch", "-ex", "set pagination off", "-ex", "target remote " + sock]
    for c in commands { args += ["-ex", c] }
    args.append(guest)
    let g = try GuestImages.run(GDBTests.gdb, args, timeout: 90)
    let vmText = String(decoding: vmOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    vm.waitUntilExit()
    return (g.output, vmText, vm.terminationStatus)
  }

  private func breakReadStepWatchExit(engine: String) throws {
    let r = try session(
      engine: engine,
      commands: [
        "print $pc == _start64", "break gdb_bump", "continue", "print gdb_counter",
        "print $rdi", "print/x $cr3", "print $efer", "stepi", "print $pc > gdb_bump",
        "delete", "watch gdb_watched", "continue", "print gdb_counter", "continue",
      ])
    let out = r.gdb
    XCTAssertTrue(out.contains("$1 = 1"), "stopped before the first instruction\n\(out)")
    XCTAssertTrue(out.contains("Breakpoint 1, gdb_bump (by=by@entry=1)"), out)
    XCTAssertTrue(out.contains("$2 = 0"), "gdb_counter before the first bump\n\(out)")
    XCTAssertTrue(out.contains("$3 = 1"), "RDI holds the argument\n\(out)")
    XCTAssertTrue(out.contains("$4 = 0x"), out)
    XCTAssertTrue(out.contains("$5 = 1280"), "EFER = LME | LMA\n\(out)")
    XCTAssertTrue(out.contains("$6 = 1"), "one instruction stepped\n\(out)")
    XCTAssertTrue(out.contains("Old value = 0") && out.contains("New value = 35"), out)
    XCTAssertTrue(out.contains("$7 = 15"), out)
    XCTAssertTrue(out.contains("exited with code 07"), out)
    XCTAssertTrue(r.vm.contains("gdbtarget: total=35 counter=15"), r.vm)
    XCTAssertEqual(r.status, 7, r.vm)
  }

  func testBreakReadStepWatchAndExitOnInterpreter() throws {
    try breakReadStepWatchExit(engine: "interpreter")
  }

  func testBreakReadStepWatchAndExitOnTranslator() throws {
    try breakReadStepWatchExit(engine: "translator")
  }

  /// A read watchpoint (Z3), memory read through the page tables, then detach: the VM
  /// runs on to its end by itself.
  func testReadWatchpointMemoryAndDetach() throws {
    let r = try session(
      engine: "interpreter",
      commands: ["rwatch gdb_counter", "continue", "x/2xb gdb_bump", "detach"])
    XCTAssertTrue(r.gdb.contains("Hardware read watchpoint 1: gdb_counter\n\nValue = 1"), r.gdb)
    XCTAssertTrue(r.gdb.contains("<gdb_bump>:\t0x55\t0x48"), r.gdb)
    XCTAssertTrue(r.gdb.contains("detached"), r.gdb)
    XCTAssertTrue(r.vm.contains("gdbtarget: total=35 counter=15"), r.vm)
    XCTAssertEqual(r.status, 7, r.vm)
  }

  func testGDBOptionErrors() throws {
    try requireSwiftVMMBinary()
    var r = try runSwiftVMM(["run", "--engine", "interpreter", "--gdb-wait"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("--gdb-wait needs --gdb"), r.output)
    r = try runSwiftVMM(["run", "--engine", "interpreter", "--gdb", "1234"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("tcp:HOST:PORT or unix:PATH"), r.output)
    r = try runSwiftVMM(["run", "--engine", "interpreter", "--gdb", "tcp:localhost:1"])
    XCTAssertEqual(r.status, 64, r.output)
    r = try runSwiftVMM(["run", "--engine", "kvm", "--gdb", "tcp:127.0.0.1:1"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("--gdb needs --engine interpreter or translator"), r.output)
  }
}
