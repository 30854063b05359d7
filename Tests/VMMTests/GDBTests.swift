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

  func requireGDB() throws {
    guard FileManager.default.isExecutableFile(atPath: GDBTests.gdb) else {
      throw XCTSkip("gdb is not installed (.ci/run installs Debian's gdb)")
    }
    try requireSwiftVMMBinary()
  }

  /// Starts `swiftvmm run` with `--gdb unix:SOCKET --gdb-wait`, runs gdb with `commands`,
  /// and returns gdb's output, the VM's output and the VM's exit status.
  func session(engine: String, kernel: String? = nil, commands: [String]) throws -> (
    gdb: String, vm: String, status: Int32
  ) {
    try requireGDB()
    let guest = try kernel ?? debugGuest()
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
    // A flat image has no symbols: gdb takes the architecture from the stub.
    if kernel == nil { args.append(guest) }
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
    XCTAssertTrue(out.contains("exited with code 01"), out)
    XCTAssertTrue(r.vm.contains("gdbtarget: total=35 counter=15"), r.vm)
    XCTAssertEqual(r.status, 1, r.vm)
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
      commands: [
        "rwatch gdb_counter", "continue", "x/2xb gdb_bump", "set var gdb_watched = 7",
        "print gdb_watched", "set $xmm0.v2_int64[0] = 5", "print $xmm0.v2_int64[0]",
        "print $mxcsr", "detach",
      ])
    XCTAssertTrue(r.gdb.contains("Hardware read watchpoint 1: gdb_counter\n\nValue = 1"), r.gdb)
    XCTAssertTrue(r.gdb.contains("<gdb_bump>:\t0x55\t0x48"), r.gdb)
    XCTAssertTrue(r.gdb.contains("$1 = 7"), "memory written through the page tables\n\(r.gdb)")
    XCTAssertTrue(r.gdb.contains("$2 = 5"), "an SSE register written\n\(r.gdb)")
    XCTAssertTrue(r.gdb.contains("$3 = 8064"), "MXCSR 0x1f80\n\(r.gdb)")
    XCTAssertTrue(r.gdb.contains("detached"), r.gdb)
    XCTAssertTrue(r.vm.contains("gdbtarget: total=35 counter=15"), r.vm)
    XCTAssertEqual(r.status, 1, r.vm)
  }

  /// `--gdb tcp:127.0.0.1:0` binds a free port and says which.
  func testTCPEndpoint() throws {
    try requireGDB()
    let vm = Process()
    vm.executableURL = URL(fileURLWithPath: CLITests.binary)
    vm.arguments = [
      "run", "--engine", "interpreter", "--gdb", "tcp:127.0.0.1:0", "--gdb-wait", "--timeout",
      "60", "--kernel", try debugGuest(),
    ]
    let err = Pipe()
    vm.standardOutput = FileHandle.nullDevice
    vm.standardError = err
    vm.standardInput = FileHandle.nullDevice
    try vm.run()
    defer { if vm.isRunning { vm.terminate() } }
    var text = ""
    var port: String?
    while port == nil {
      let d = err.fileHandleForReading.availableData
      if d.isEmpty { break }
      text += String(decoding: d, as: UTF8.self)
      if let r = text.range(of: "gdb server on tcp:127.0.0.1:") {
        port = String(text[r.upperBound...].prefix { $0.isNumber })
      }
    }
    guard let port, port != "0" else { return XCTFail("no port announced: \(text)") }
    let g = try GuestImages.run(
      GDBTests.gdb,
      [
        "-nx", "-batch", "-ex", "target remote 127.0.0.1:" + port, "-ex", "print $pc == _start64",
        "-ex", "detach", try debugGuest(),
      ])
    XCTAssertTrue(g.output.contains("$1 = 1"), g.output)
    vm.waitUntilExit()
    XCTAssertEqual(vm.terminationStatus, 1)
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
    r = try runSwiftVMM(["run", "--api-sock", "/tmp/unused.sock", "--gdb", "tcp:127.0.0.1:1"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("--gdb cannot be combined with --api-sock"), r.output)
  }

  // MARK: A raw client: Ctrl-C, garbage, a second client, disconnects, kill

  private func connect(_ path: String) -> Int32? {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var a = sockaddr_un()
    a.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &a.sun_path) { p in
      for (i, b) in path.utf8.enumerated() { p[i] = b }
    }
    let ok = withUnsafePointer(to: &a) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
      }
    }
    var tv = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    if ok { return fd }
    close(fd)
    return nil
  }

  private func send(_ fd: Int32, _ bytes: [UInt8]) {
    _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  }

  private func packet(_ s: String) -> [UInt8] {
    var sum: UInt8 = 0
    for b in s.utf8 { sum &+= b }
    return Array("$\(s)#\(String(format: "%02x", sum))".utf8)
  }

  /// Reads until a whole `$...#xx` reply arrives; returns its payload ("" on EOF/timeout).
  private func reply(_ fd: Int32) -> String {
    var text: [UInt8] = []
    var b: UInt8 = 0
    while read(fd, &b, 1) == 1 {
      text.append(b)
      if text.count >= 3, text[text.count - 3] == UInt8(ascii: "#"),
        let start = text.firstIndex(of: UInt8(ascii: "$"))
      {
        return String(decoding: text[(start + 1)..<(text.count - 3)], as: UTF8.self)
      }
    }
    return ""
  }

  func testInterruptGarbageSecondClientDisconnectAndKill() throws {
    try requireSwiftVMMBinary()
    let sock = NSTemporaryDirectory() + "swiftvmm-gdb-\(UUID().uuidString.prefix(8)).sock"
    let vm = Process()
    vm.executableURL = URL(fileURLWithPath: CLITests.binary)
    // echo polls the UART for ever: a guest that never stops by itself.
    vm.arguments = [
      "run", "--engine", "interpreter", "--gdb", "unix:" + sock, "--timeout", "60", "--kernel",
      try GuestImages.path("echo64.elf"),
    ]
    vm.standardOutput = FileHandle.nullDevice
    vm.standardError = FileHandle.nullDevice
    vm.standardInput = FileHandle.nullDevice
    try vm.run()
    defer {
      if vm.isRunning { vm.terminate() }
      try? FileManager.default.removeItem(atPath: sock)
    }
    for _ in 0..<500 where !FileManager.default.fileExists(atPath: sock) { usleep(10_000) }
    guard let c1 = connect(sock) else { return XCTFail("cannot connect to \(sock)") }
    // Attaching stops the running guest.
    send(c1, packet("?"))
    XCTAssertTrue(reply(c1).hasPrefix("T"))
    // Garbage, a bad checksum and an oversize packet are answered or ignored.
    send(c1, Array("junk$g#00".utf8))
    send(
      c1,
      [UInt8(ascii: "$")] + [UInt8](repeating: UInt8(ascii: "m"), count: 40000) + Array("#00".utf8))
    send(c1, packet("m0,zz"))
    XCTAssertEqual(reply(c1), "E01")
    // A second client is turned away while the first is connected.
    if let c2 = connect(sock) {
      var b: UInt8 = 0
      XCTAssertEqual(read(c2, &b, 1), 0, "the second client is closed")
      close(c2)
    }
    send(c1, packet("c"))
    usleep(200_000)
    send(c1, [0x03])
    XCTAssertEqual(reply(c1), "T02thread:01;")
    send(c1, packet("c"))
    // Disconnect mid-packet: the stub detaches and the guest runs on.
    send(c1, Array("$m10".utf8))
    close(c1)
    usleep(300_000)
    XCTAssertTrue(vm.isRunning)
    guard let c3 = connect(sock) else { return XCTFail("cannot reconnect") }
    send(c3, packet("?"))
    XCTAssertTrue(reply(c3).hasPrefix("T"))
    send(c3, packet("k"))
    vm.waitUntilExit()
    close(c3)
    XCTAssertEqual(vm.terminationStatus, 128 + 9, "kill stops the VM as SIGKILL would")
  }
}
