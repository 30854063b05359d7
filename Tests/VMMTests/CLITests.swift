import Foundation
import KVM
import TestSupport
import XCTest

extension XCTestCase {
  /// Runs the `swiftvmm` binary the way a user does: exit status and combined output.
  func runSwiftVMM(_ args: [String]) throws -> (status: Int32, output: String) {
    try requireSwiftVMMBinary()
    return try GuestImages.run(CLITests.binary, args, timeout: 120)
  }

  func requireSwiftVMMBinary() throws {
    guard FileManager.default.isExecutableFile(atPath: CLITests.binary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner at \(CLITests.binary)")
    }
  }
}

/// Runs the `swiftvmm` binary the way a user does, and checks statuses and messages.
final class CLITests: XCTestCase {
  static var binary: String { GuestImages.swiftvmmBinary }

  func swiftvmm(_ args: [String]) throws -> (status: Int32, output: String) {
    try runSwiftVMM(args)
  }

  var kvmArgs: [String] {
    get throws {
      let host = KVMHost.probe()
      guard host.isUsable else { throw XCTSkip("needs /dev/kvm: \(host.openError ?? "")") }
      return ["--engine", "kvm"]
    }
  }

  func tempFile(_ bytes: [UInt8]) throws -> String {
    let p = NSTemporaryDirectory() + "swiftvmm-cli-\(UUID().uuidString)"
    try Data(bytes).write(to: URL(fileURLWithPath: p))
    addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
    return p
  }

  func testMissingKernel() throws {
    let r = try swiftvmm(["run", "--kernel", "/nonexistent/vmlinuz"])
    XCTAssertEqual(r.status, 66)
    XCTAssertTrue(r.output.contains("'/nonexistent/vmlinuz' does not exist"), r.output)
  }

  func testUnreadableKernel() throws {
    let dir = NSTemporaryDirectory()
    let r = try swiftvmm(["run", "--kernel", dir])
    XCTAssertEqual(r.status, 66, r.output)
    XCTAssertTrue(r.output.contains("cannot be read"), r.output)
  }

  func testGarbageKernel() throws {
    let p = try tempFile([UInt8](repeating: 0x90, count: 4096))
    let r = try swiftvmm(["run", "--kernel", p])
    XCTAssertEqual(r.status, 66)
    XCTAssertTrue(r.output.contains("neither a multiboot image nor an ELF"), r.output)
    XCTAssertEqual(r.output.split(separator: "\n").count, 1, "one-line error: \(r.output)")
  }

  func testTruncatedKernel() throws {
    let full = try GuestImages.bytes("hello64.elf")
    let p = try tempFile(Array(full.prefix(200)))
    let r = try swiftvmm(["run", "--kernel", p])
    XCTAssertEqual(r.status, 66)
    XCTAssertTrue(r.output.contains("truncated"), r.output)
  }

  func testBadMemorySizes() throws {
    let hello = try GuestImages.path("hello.elf")
    for (size, words) in [
      ("0", "must not be zero"), ("lots", "cannot parse memory size"),
      ("64T", "larger than this host"), ("1024K", "below the minimum"),
      ("1001K", "multiple of 4 KiB"), ("12Q", "cannot parse"), ("-5", "cannot parse"),
      ("99999999999999999999G", "cannot parse"),
    ] {
      let r = try swiftvmm(["run", "--kernel", hello, "--memory=\(size)"])
      XCTAssertEqual(r.status, 64, "\(size): \(r.output)")
      XCTAssertTrue(r.output.contains(words), "\(size): \(r.output)")
    }
  }

  func testSegmentsOutsideRAM() throws {
    let r = try swiftvmm(["run", "--kernel", try GuestImages.path("hello.elf"), "--memory", "1M"])
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.output.contains("minimum") || r.output.contains("outside guest RAM"), r.output)
  }

  func testUnknownEngineIsAUsageError() throws {
    let r = try swiftvmm(["run", "--engine", "vmware"])
    XCTAssertEqual(r.status, 64)
    XCTAssertTrue(r.output.contains("unknown engine 'vmware'"), r.output)
  }

  func testTripleFaultReportsAndExits2() throws {
    let p = try tempFile(FlatMultiboot.image(code: [0x0F, 0x0B]))
    let r = try swiftvmm(["run", "--kernel", p] + kvmArgs)
    XCTAssertEqual(r.status, 2, r.output)
    XCTAssertTrue(r.output.contains("triple fault"), r.output)
  }

  func testHelloOnKVMStatusAndGreeting() throws {
    let r = try swiftvmm(["run", "--kernel", try GuestImages.path("hello.elf")] + kvmArgs)
    XCTAssertEqual(r.status, 1)
    XCTAssertTrue(r.output.hasPrefix("Hello from SwiftVMM guest!\n"), r.output)
  }

  func testEmbeddedDemoGuestRuns() throws {
    let r = try swiftvmm(["run", "--timeout", "60"])
    XCTAssertEqual(r.status, 1, r.output)
    XCTAssertTrue(r.output.contains("Hello from SwiftVMM guest!"), r.output)
  }

  func testStatsFileIsWritten() throws {
    let out = NSTemporaryDirectory() + "swiftvmm-stats-\(UUID().uuidString).json"
    defer { try? FileManager.default.removeItem(atPath: out) }
    let r = try swiftvmm(
      ["run", "--kernel", try GuestImages.path("hello.elf"), "--stats", out] + kvmArgs)
    XCTAssertEqual(r.status, 1, r.output)
    let json =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))
      as? [String: Any]
    XCTAssertEqual(json?["exit_status"] as? Int, 1)
    let counters = json?["counters"] as? [String: Any]
    XCTAssertNotNil(counters?["vmm.exits.io"], "\(String(describing: counters))")
  }

  func testInfoReportsKVMKind() throws {
    let r = try swiftvmm(["info"])
    XCTAssertEqual(r.status, 0)
    XCTAssertTrue(r.output.contains("Default engine:"), r.output)
    XCTAssertTrue(r.output.contains("KVM"), r.output)
  }

  func testBadEscapeKeyIsAUsageError() throws {
    let r = try swiftvmm(["run", "--escape-key", "ctrl-1"])
    XCTAssertEqual(r.status, 64, r.output)
    XCTAssertTrue(r.output.contains("--escape-key"), r.output)
  }

  func testSIGINTStopsTheVMCleanly() throws {
    guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner at \(Self.binary)")
    }
    // mov al,'R'; mov dx,0x3F8; out dx,al; jmp $: the byte on the console says the guest
    // runs, so the signal handlers are in place (a fixed sleep raced them under load).
    let image = try tempFile(
      FlatMultiboot.image(code: [0xB0, 0x52, 0x66, 0xBA, 0xF8, 0x03, 0xEE, 0xEB, 0xFE]))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: Self.binary)
    p.arguments = ["run", "--engine", "interpreter", "--kernel", image]
    let err = Pipe()
    let out = Pipe()
    p.standardError = err
    p.standardOutput = out
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let running = DispatchSemaphore(value: 0)
    out.fileHandleForReading.readabilityHandler = { h in
      let d = h.availableData
      if d.contains(0x52) || d.isEmpty {
        h.readabilityHandler = nil
        running.signal()
      }
    }
    XCTAssertEqual(running.wait(timeout: .now() + 60), .success, "the guest never ran")
    kill(p.processIdentifier, SIGINT)
    let deadline = Date().addingTimeInterval(10)
    while p.isRunning && Date() < deadline { usleep(50_000) }
    if p.isRunning { p.terminate() }
    p.waitUntilExit()
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssertEqual(p.terminationStatus, 130, text)
    XCTAssertTrue(text.contains("stopped by SIGINT"), text)
  }
}

extension CLITests {
  func testDiskErrorsAreOneLineBeforeBoot() throws {
    for (args, message) in [
      (["--disk", "/nonexistent/d.img"], "--disk /nonexistent/d.img: no such file"),
      (["--disk", NSTemporaryDirectory()], "is a directory, not a disk image"),
      (["--disk", "/etc/hostname,bogus"], "unknown option 'bogus'"),
      (["--console", "vga"], "--console vga: choose uart or virtio"),
    ] {
      let r = try swiftvmm(["run", "--engine", "interpreter"] + args)
      XCTAssertEqual(r.status, 66, r.output)
      XCTAssertTrue(r.output.contains(message), r.output)
      XCTAssertEqual(r.output.split(separator: "\n").count, 1, r.output)
    }
  }
}
