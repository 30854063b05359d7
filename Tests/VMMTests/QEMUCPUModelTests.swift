import Engine
import Foundation
import TestSupport
import VMM
import XCTest

/// `CPUIDPolicy.qemuCPUModel` makes QEMU's guest see our CPUID: the cpuid guest prints the
/// same vendor, signature, feature words and brand under QEMU as under the interpreter.
final class QEMUCPUModelTests: XCTestCase {
  /// "leaf.sub" -> [eax, ebx, ecx, edx] from the cpuid guest's dump.
  func leaves(_ text: String) -> [String: [UInt32]] {
    var out: [String: [UInt32]] = [:]
    for line in text.split(separator: "\n") where line.contains(": eax=") {
      let key = String(line.prefix { $0 != ":" })
      let regs = line.split(separator: " ").dropFirst().compactMap { f -> UInt32? in
        f.split(separator: "=").last.flatMap { UInt32($0, radix: 16) }
      }
      out[key] = regs
    }
    return out
  }

  func testQEMUSeesOurDefaultPolicy() throws {
    guard let qemu = GuestImages.qemu else { throw XCTSkip("qemu-system-x86_64 is not installed") }
    let kernel = try GuestImages.path("cpuid.elf")
    let model = CPUIDPolicy.default.masked(to: EngineFeatures.implemented(by: .interpreter))
      .qemuCPUModel
    let q = try GuestImages.run(
      qemu,
      [
        "-accel", "tcg,thread=single", "-cpu", model, "-m", "128", "-display", "none", "-serial",
        "stdio", "-no-reboot", "-kernel", kernel, "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
      ], timeout: 60)
    let ours = try GuestImages.run(
      CLITests.binary, ["run", "--engine", "interpreter", "--kernel", kernel, "--memory", "128M"],
      timeout: 120)
    let a = leaves(q.output)
    let b = leaves(ours.output)
    XCTAssertEqual(a["00000000.00"], b["00000000.00"], "vendor and max leaf")
    for i in [0, 2, 3] {
      XCTAssertEqual(a["00000001.00"]?[i], b["00000001.00"]?[i], "leaf 1 register \(i)")
    }
    XCTAssertEqual(a["80000000.00"]?[0], b["80000000.00"]?[0], "max extended leaf")
    XCTAssertEqual(a["80000001.00"]?[2], b["80000001.00"]?[2], "leaf 0x80000001 ecx")
    // QEMU mirrors leaf 1's EDX into 0x80000001 for AMD (its AMD alias bits); compare the rest.
    let aliases: UInt32 = 0x0183_F3FF
    XCTAssertEqual(
      a["80000001.00"].map { $0[3] & ~aliases }, b["80000001.00"].map { $0[3] & ~aliases },
      "leaf 0x80000001 edx")
    for l in ["80000002.00", "80000003.00", "80000004.00"] { XCTAssertEqual(a[l], b[l], "brand") }
  }
}
