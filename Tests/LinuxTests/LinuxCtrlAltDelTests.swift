import Boot
import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Firecracker's way to stop a guest: `PUT /actions {"action_type": "SendCtrlAltDel"}`
/// presses Ctrl, Alt and Delete on the i8042; Linux's keyboard driver sees them and,
/// with kernel.ctrl-alt-del = 1 (our busybox init leaves the kernel's default), the
/// kernel restarts the machine. Firecracker exits on that reset, and so does
/// `swiftvmm run --api-sock`: status 0. Release builds only.
final class LinuxCtrlAltDelTests: XCTestCase {
  func testSendCtrlAltDelOverTheAPIStopsLinux() throws {
    let g = try requireLinuxGuestAndBinary()
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else {
      throw XCTSkip("needs curl (.ci/run installs it)")
    }
    let dir = NSTemporaryDirectory() + "swiftvmm-cad-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let initrd = dir + "/initrd.cpio.gz"
    try Data(
      try StandardInitramfs.build(
        guest: g,
        initScript: StandardInitramfs.initScript(
          commands: """
            echo cad=$(cat /proc/sys/kernel/ctrl-alt-del)
            echo CAD-READY
            while true; do sleep 1; done
            """))
    ).write(to: URL(fileURLWithPath: initrd))
    let sock = dir + "/api.sock"

    let p = Process()
    p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
    p.arguments = ["run", "--api-sock", sock]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    let t = Transcript()
    pipe.fileHandleForReading.readabilityHandler = { t.append($0.availableData) }
    try p.run()
    defer { if p.isRunning { p.terminate() } }
    let watchdog = DispatchWorkItem { kill(p.processIdentifier, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + 600, execute: watchdog)
    defer { watchdog.cancel() }
    for _ in 0..<3000 where !FileManager.default.fileExists(atPath: sock) { usleep(10_000) }

    func curl(_ path: String, _ body: String) throws -> String {
      try GuestImages.run(
        "/usr/bin/curl",
        [
          "-s", "--unix-socket", sock, "-X", "PUT", "http://localhost" + path, "-w", "%{http_code}",
          "--data", body,
        ], timeout: 30
      ).output
    }
    XCTAssertEqual(
      try curl(
        "/boot-source",
        #"{"kernel_image_path": "\#(g.bzImage)", "initrd_path": "\#(initrd)", "boot_args": "console=ttyS0 panic=-1"}"#
      ), "204")
    XCTAssertEqual(try curl("/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 256}"#), "204")
    XCTAssertEqual(try curl("/swiftvmm", #"{"engine": "interpreter", "cpuid": "kvm"}"#), "204")
    XCTAssertEqual(try curl("/actions", #"{"action_type": "InstanceStart"}"#), "204")

    let end = Date() + 500
    while !t.snapshot.contains("CAD-READY") && p.isRunning && Date() < end { usleep(100_000) }
    XCTAssertTrue(t.snapshot.contains("cad=1"), t.snapshot.suffix(3000).description)
    XCTAssertTrue(t.snapshot.contains("CAD-READY"), t.snapshot.suffix(3000).description)
    XCTAssertEqual(try curl("/actions", #"{"action_type": "SendCtrlAltDel"}"#), "204")
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0, t.snapshot.suffix(3000).description)
    XCTAssertTrue(
      t.snapshot.contains("reboot: Restarting system"), t.snapshot.suffix(3000).description)
  }
}
