import Engine
import Foundation
import TestSupport
import XCTest

@testable import VMM

extension LinuxBootTests {
  /// One boot with 4 vCPUs on the interpreter: Linux brings every AP online
  /// (INIT-SIPI-SIPI, MADT), /proc/cpuinfo and nproc say 4, four md5sums of
  /// the same file run at once and agree with one run alone and with the
  /// host, and the VM powers off.
  func testFourCPUsOnlineAndParallelWorkloadAgrees() throws {
    let g = try guest()
    // 8 MiB of a known pattern; the host makes the same bytes for its own digest.
    let generate = "yes swiftvmm-smp | head -c \(8 << 20)"
    let commands = """
      echo \(Self.marker)
      echo nproc=$(nproc)
      echo processors=$(grep -c ^processor /proc/cpuinfo)
      echo online=$(cat /sys/devices/system/cpu/online)
      \(generate) > /f
      md5sum /f > /r0
      for i in 1 2 3 4; do md5sum /f > /r$i & done; wait
      for i in 0 1 2 3 4; do echo digest$i=$(cut -d' ' -f1 /r$i); done
      """
    let (o, out, m) = try boot(g, commands: commands, cpuid: try CPUIDPolicy.named("kvm"), cpus: 4)
    XCTAssertEqual(o, .powerOff, "last lines:\n\(out.suffix(3000))")
    XCTAssertTrue(out.contains(Self.marker), String(out.suffix(3000)))
    XCTAssertTrue(out.contains("nproc=4"), String(out.suffix(3000)))
    XCTAssertTrue(out.contains("processors=4"))
    XCTAssertTrue(out.contains("online=0-3"))
    XCTAssertTrue(out.contains("smp: Brought up 1 node, 4 CPUs"))
    // The test runner ignores SIGPIPE, so the host's `yes` reports the closed pipe on
    // stderr: keep that out of the digest.
    let host = try GuestImages.run(
      "/bin/sh",
      [
        "-c", "\(generate.replacingOccurrences(of: "| head", with: "2>/dev/null | head")) | md5sum",
      ],
      timeout: 60)
    let expected = String(host.output.prefix(32))
    XCTAssertEqual(expected.count, 32, host.output)
    XCTAssertTrue(expected.allSatisfy(\.isHexDigit), host.output)
    for i in 0...4 {
      XCTAssertTrue(
        out.contains("digest\(i)=\(expected)"), "md5sum \(i) differs:\n\(out.suffix(2000))")
    }
    let s = m.statistics()
    XCTAssertEqual(s["vmm.vcpus"], 4)
    XCTAssertEqual(s["vmm.vcpu_startups"], 3)
    for i in 0..<4 {
      XCTAssertGreaterThan(s["cpu\(i).instructions"] ?? 0, 10_000_000, "vCPU \(i) did little work")
    }
  }
}
