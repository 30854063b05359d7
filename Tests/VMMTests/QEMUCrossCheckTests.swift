import Foundation
import KVM
import TestSupport
import XCTest

/// The same guest image must print the same text under SwiftVMM as under QEMU.
final class QEMUCrossCheckTests: XCTestCase {
  /// The guest's own output under QEMU: SeaBIOS prints to the same serial port
  /// first, so keep what follows the guest's first line.
  static func qemuOutput(_ kernel: String, firstLine: String, cmdline: String = "") throws -> (Int32, String) {
    guard let qemu = GuestImages.qemu else {
      throw XCTSkip("qemu-system-x86_64 is not installed (.ci/run installs it)")
    }
    var args = [
      "-accel", "tcg", "-m", "128", "-nographic", "-no-reboot", "-kernel", kernel,
      "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
    ]
    if !cmdline.isEmpty { args += ["-append", cmdline] }
    let r = try GuestImages.run(qemu, args, timeout: 60)
    guard let range = r.output.range(of: firstLine) else { return (r.status, "") }
    return (r.status, String(r.output[range.lowerBound...]))
  }

  func check(_ guest: String, firstLine: String, engine: String) throws {
    let kernel = try GuestImages.path(guest)
    if engine == "kvm" {
      let host = KVMHost.probe()
      guard host.isUsable else { throw XCTSkip("needs /dev/kvm: \(host.openError ?? "")") }
    }
    let (qs, qemu) = try Self.qemuOutput(kernel, firstLine: firstLine)
    let ours = try GuestImages.run(CLITests.binary, ["run", "--engine", engine, "--kernel", kernel, "--memory", "128M"])
    XCTAssertEqual(ours.status, qs)
    XCTAssertFalse(qemu.isEmpty, "QEMU printed no guest output")
    XCTAssertEqual(ours.output, qemu)
  }

  func testHelloMatchesQEMUOnKVM() throws {
    try check("hello.elf", firstLine: "Hello from SwiftVMM guest!", engine: "kvm")
  }

  func testHelloMatchesQEMUOnInterpreter() throws {
    try check("hello.elf", firstLine: "Hello from SwiftVMM guest!", engine: "interpreter")
  }
}
