import Boot
import Foundation
import TestSupport
import XCTest

/// The Debian guest on `--net user`: DHCP from slirp, an HTTP download from a server
/// on the host's loopback through the gateway, and a TCP stream from the guest to the
/// host through `hostfwd`. One boot serves all three checks.
final class LinuxNetworkTests: XCTestCase {
  func testUserModeNetworking() throws {
    let guest = try requireLinuxGuestAndBinary()
    let dir = NSTemporaryDirectory() + "swiftvmm-net-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    var rng = SystemRandomNumberGenerator()
    let blob = (0..<(256 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data(blob))
    let blobMD5 = try Self.md5(dir + "/blob", busybox: guest.busybox)

    // The host's HTTP server: Debian's busybox-static runs on the host too.
    let httpPort = try freePort()
    let httpd = Process()
    httpd.executableURL = URL(fileURLWithPath: guest.busybox)
    httpd.arguments = ["httpd", "-f", "-p", "127.0.0.1:\(httpPort)", "-h", dir]
    try httpd.run()
    defer { httpd.terminate() }

    let fwdPort = try freePort()
    let lines = 3000
    let expected = (1...lines).map { "guest-line-\($0)\n" }.joined()
    let commands = """
      ip link set eth0 up
      busybox udhcpc -i eth0 -n -q -s /bin/true 2>&1 | grep -o 'lease of [0-9.]* obtained'
      ip addr add 10.0.2.15/24 dev eth0
      ip route add default via 10.0.2.2
      echo http-md5=$(wget -q -O - http://10.0.2.2:\(httpPort)/blob | md5sum)
      for i in $(seq 1 \(lines)); do echo guest-line-$i; done > /tmp/out
      echo NET-LISTENING
      nc -l -p 7777 < /tmp/out
      echo NC-DONE
      """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
    p.arguments = [
      "linux", "--engine", "interpreter", "--net", "user,hostfwd=tcp:127.0.0.1:\(fwdPort)-:7777",
      "--stats",
      dir + "/stats.json",
      "--run", commands,
    ]
    let output = Pipe()
    p.standardOutput = output
    p.standardError = output
    p.standardInput = FileHandle.nullDevice
    let transcript = Transcript()
    output.fileHandleForReading.readabilityHandler = { transcript.append($0.availableData) }
    try p.run()
    defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
    func waitFor(_ s: String, seconds: Double) -> Bool {
      let end = Date().addingTimeInterval(seconds)
      while Date() < end {
        if transcript.snapshot.contains(s) { return true }
        if !p.isRunning { return transcript.snapshot.contains(s) }
        usleep(100_000)
      }
      return false
    }
    XCTAssertTrue(
      waitFor("NET-LISTENING", seconds: 900),
      "guest never listened:\n\(transcript.snapshot.suffix(3000))")
    let text = transcript.snapshot
    XCTAssertTrue(
      text.contains("lease of 10.0.2.15 obtained"), "no DHCP lease:\n\(text.suffix(3000))")
    XCTAssertTrue(text.contains("http-md5=\(blobMD5)"), "download differs:\n\(text.suffix(3000))")

    // The guest's nc listens on 7777; hostfwd brings it to the host's loopback.
    let received = try readAll(port: fwdPort, expectedBytes: expected.utf8.count, seconds: 300)
    XCTAssertEqual(received.count, expected.utf8.count)
    XCTAssertTrue(received == Array(expected.utf8), "the hostfwd stream differs")
    XCTAssertTrue(waitFor("NC-DONE", seconds: 120), transcript.snapshot.suffix(2000).description)
    let end = Date().addingTimeInterval(120)
    while p.isRunning && Date() < end { usleep(100_000) }
    XCTAssertFalse(p.isRunning, "the guest did not power off")
    XCTAssertEqual(p.terminationStatus, 0, transcript.snapshot.suffix(2000).description)
    let stats = try String(contentsOfFile: dir + "/stats.json", encoding: .utf8)
    XCTAssertTrue(stats.contains("virtio_net.frames_received"), stats)
  }

  /// busybox md5sum's hex digest of a host file (Debian's busybox-static runs on the host).
  static func md5(_ path: String, busybox: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: busybox)
    p.arguments = ["md5sum", path]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    p.waitUntilExit()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return String(text.prefix(32))
  }

  /// Connects to 127.0.0.1:port (retrying while the guest's listener comes up) and
  /// reads until `expectedBytes` arrived or the peer closed.
  func readAll(port: Int, expectedBytes: Int, seconds: Double) throws -> [UInt8] {
    let end = Date().addingTimeInterval(seconds)
    var out: [UInt8] = []
    while Date() < end && out.count < expectedBytes {
      let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      defer { close(s) }
      var addr = sockaddr_in()
      addr.sin_family = sa_family_t(AF_INET)
      addr.sin_addr.s_addr = inet_addr("127.0.0.1")
      addr.sin_port = UInt16(port).bigEndian
      let r = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
      if r != 0 {
        usleep(500_000)
        continue
      }
      var buffer = [UInt8](repeating: 0, count: 65536)
      while out.count < expectedBytes && Date() < end {
        let n = buffer.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        out += buffer[0..<n]
      }
      // slirp accepts the connection before the guest does; an empty read means
      // the guest was not listening yet: try again.
      if !out.isEmpty { break }
      usleep(500_000)
    }
    return out
  }
}
