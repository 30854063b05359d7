import Boot
import Foundation
import TestSupport
import XCTest

/// The Debian 12 system of `guest fetch-rootfs`, booted as a user would
/// (`swiftvmm linux --root --net user,hostfwd=...`) on a copy of the image: systemd
/// reaches running or degraded, the serial console's autologin shell writes a file,
/// the host runs a command over ssh with a key this test generates, `systemctl
/// poweroff` ends the VM with status 0, and the file is in the image afterwards.
final class DebianSystemTests: XCTestCase {
  func testSystemdBootSerialLoginSSHAndPoweroff() throws {
    _ = try requireLinuxGuestAndBinary()
    let image = LinuxGuestImages.defaultCacheDirectory + "/" + DebianRootfs.imageName
    guard FileManager.default.fileExists(atPath: image) else {
      throw XCTSkip("\(image) not built; run `sudo swiftvmm guest fetch-rootfs`")
    }
    for tool in ["/usr/bin/ssh", "/usr/bin/ssh-keygen", "/usr/sbin/debugfs"]
    where !FileManager.default.isExecutableFile(atPath: tool) {
      throw XCTSkip("\(tool) not installed (openssh-client, e2fsprogs)")
    }
    let dir = NSTemporaryDirectory() + "swiftvmm-debian-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }

    // A sparse copy: the guest writes to it, the cached image stays as built.
    let disk = dir + "/debian.ext4"
    let copy = try GuestImages.run("/bin/cp", ["--sparse=always", image, disk], timeout: 300)
    XCTAssertEqual(copy.status, 0, copy.output)
    let key = dir + "/id_ed25519"
    let keygen = try GuestImages.run(
      "/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key])
    XCTAssertEqual(keygen.status, 0, keygen.output)
    let authorized = "/root/.ssh/authorized_keys"
    try """
    rm \(authorized)
    write \(key).pub \(authorized)
    sif \(authorized) mode 0100600
    sif \(authorized) uid 0
    sif \(authorized) gid 0

    """.write(toFile: dir + "/debugfs.cmds", atomically: true, encoding: .utf8)
    let put = try GuestImages.run("/usr/sbin/debugfs", ["-w", "-f", dir + "/debugfs.cmds", disk])
    XCTAssertEqual(put.status, 0, put.output)
    let check = try GuestImages.run("/usr/sbin/debugfs", ["-R", "cat \(authorized)", disk])
    XCTAssertTrue(
      check.output.contains("ssh-ed25519"), "key not in the image copy: \(check.output)")

    let port = try freePort()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
    p.arguments = [
      "linux", "--engine", "interpreter", "--root", "--disk", disk, "--net",
      "user,hostfwd=tcp:127.0.0.1:\(port)-:22",
    ]
    let input = Pipe()
    let output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    p.standardError = output
    let transcript = Transcript()
    output.fileHandleForReading.readabilityHandler = { transcript.append($0.availableData) }
    let start = Date()
    try p.run()
    defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
    func type(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }
    /// The first match of `pattern` in the transcript after `from`, waiting up to `seconds`.
    func waitFor(_ pattern: String, seconds: Double, from: String.Index? = nil) -> String? {
      let end = Date().addingTimeInterval(seconds)
      let regex = try! NSRegularExpression(pattern: pattern)
      while Date() < end {
        let text = transcript.snapshot
        let range = NSRange(text.startIndex..., in: text)
        if let m = regex.firstMatch(in: text, range: range), let r = Range(m.range, in: text) {
          return String(text[r])
        }
        if !p.isRunning { return nil }
        usleep(200_000)
      }
      return nil
    }

    // Typed commands echo back; each marker is built by the shell so only the
    // command's output matches it.
    XCTAssertNotNil(
      waitFor("root@swiftvmm:~#", seconds: 1500),
      "no autologin shell on the serial console:\n\(transcript.snapshot.suffix(4000))")
    let login = Date().timeIntervalSince(start)
    type("echo STATE=$(systemctl is-system-running --wait)")
    let state = waitFor("STATE=[a-z-]+", seconds: 900)
    type("systemctl --failed --no-legend --plain | sed 's/^/FAILED-UNIT /'; echo LIST=$((6*7))")
    XCTAssertNotNil(waitFor("LIST=42", seconds: 120), transcript.snapshot.suffix(3000).description)
    let failed = transcript.snapshot.split(separator: "\n").filter {
      $0.hasPrefix("FAILED-UNIT ")
    }
    print("DebianSystemTests: login prompt after \(Int(login)) s; \(state ?? "no state")")
    for f in failed { print("DebianSystemTests: \(f)") }
    XCTAssertTrue(
      state == "STATE=running" || state == "STATE=degraded",
      "\(state ?? "no state"):\n\(transcript.snapshot.suffix(4000))")

    let token = "written-on-the-console-\(UUID().uuidString)"
    type("echo \(token) > /root/swiftvmm-test.txt && sync && echo WRITTEN=$((40+2))")
    XCTAssertNotNil(
      waitFor("WRITTEN=42", seconds: 120), transcript.snapshot.suffix(3000).description)

    let ssh = try GuestImages.run(
      "/usr/bin/ssh",
      [
        "-i", key, "-p", "\(port)", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=120",
        "root@127.0.0.1", "cat /root/swiftvmm-test.txt; apt --version",
      ], timeout: 600)
    XCTAssertEqual(ssh.status, 0, ssh.output)
    XCTAssertTrue(ssh.output.contains(token), ssh.output)
    XCTAssertTrue(ssh.output.contains("apt "), ssh.output)

    type("systemctl poweroff")
    let end = Date().addingTimeInterval(600)
    while p.isRunning && Date() < end { usleep(200_000) }
    XCTAssertFalse(p.isRunning, "no poweroff:\n\(transcript.snapshot.suffix(3000))")
    XCTAssertEqual(p.terminationStatus, 0, transcript.snapshot.suffix(3000).description)

    let cat = try GuestImages.run("/usr/sbin/debugfs", ["-R", "cat /root/swiftvmm-test.txt", disk])
    XCTAssertTrue(cat.output.contains(token), "the file is not in the image: \(cat.output)")
  }
}
