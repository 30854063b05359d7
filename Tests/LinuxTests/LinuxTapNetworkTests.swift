import Boot
import Foundation
import TestSupport
import XCTest

/// The Debian guest on `--net tap=NAME`, in a network namespace of the test's own: the
/// guest pings the host side, downloads a file from an HTTP server there and sends a
/// TCP stream to a listener there. The namespace (and its TAP) is removed afterwards.
final class LinuxTapNetworkTests: XCTestCase {
  func testTapNetworkingInANamespace() throws {
    let guest = try requireLinuxGuestAndBinary()
    guard geteuid() == 0 else { throw XCTSkip("TAP devices and network namespaces need root") }
    guard FileManager.default.fileExists(atPath: "/dev/net/tun") else {
      throw XCTSkip("/dev/net/tun is missing: this host has no TUN/TAP")
    }
    guard
      let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first(where: {
        FileManager.default.isExecutableFile(atPath: $0)
      })
    else { throw XCTSkip("the ip command (iproute2) is missing") }

    let ns = "swiftvmm-test-\(getpid())"
    func sh(_ args: [String]) throws -> Int32 {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: args[0])
      p.arguments = Array(args.dropFirst())
      p.standardOutput = FileHandle.nullDevice
      p.standardError = FileHandle.nullDevice
      try p.run()
      p.waitUntilExit()
      return p.terminationStatus
    }
    guard try sh([ip, "netns", "add", ns]) == 0 else {
      throw XCTSkip("cannot create a network namespace here (ip netns add failed)")
    }
    addTeardownBlock { _ = try? sh([ip, "netns", "delete", ns]) }
    let inNS = [ip, "netns", "exec", ns]
    for step in [
      ["ip", "link", "set", "lo", "up"], ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
      ["ip", "addr", "add", "192.168.77.1/24", "dev", "tap0"], ["ip", "link", "set", "tap0", "up"],
    ] {
      guard try sh(inNS + [ip] + step.dropFirst()) == 0 else {
        throw XCTSkip("cannot set up tap0 in the namespace: \(step.joined(separator: " ")) failed")
      }
    }

    let dir = NSTemporaryDirectory() + "swiftvmm-tap-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    var rng = SystemRandomNumberGenerator()
    let blob = (0..<(256 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data(blob))

    // Host side, inside the namespace: busybox-static's httpd and nc run on the host too.
    let httpd = Process()
    httpd.executableURL = URL(fileURLWithPath: ip)
    httpd.arguments = [
      "netns", "exec", ns, guest.busybox, "httpd", "-f", "-p", "192.168.77.1:8080", "-h", dir,
    ]
    try httpd.run()
    defer { httpd.terminate() }
    // The listener writes what it receives to a file: no pipe reader to race with.
    let receivedPath = dir + "/received"
    FileManager.default.createFile(atPath: receivedPath, contents: nil)
    let listener = Process()
    listener.executableURL = URL(fileURLWithPath: ip)
    listener.arguments = ["netns", "exec", ns, guest.busybox, "nc", "-l", "-p", "9000"]
    // busybox nc quits when its stdin ends: keep it open (and empty) until the end.
    let listenerInput = Pipe()
    listener.standardInput = listenerInput
    listener.standardOutput = FileHandle(forWritingAtPath: receivedPath)
    try listener.run()
    defer { if listener.isRunning { listener.terminate() } }

    let lines = 3000
    let expected = (1...lines).map { "tap-line-\($0)\n" }.joined()
    let commands = """
      ip link set eth0 up
      ip addr add 192.168.77.2/24 dev eth0
      ping -c 3 -W 5 192.168.77.1 | grep -o '3 packets received'
      echo http-md5=$(wget -q -O - http://192.168.77.1:8080/blob | md5sum)
      for i in $(seq 1 \(lines)); do echo tap-line-$i; done | nc 192.168.77.1 9000
      echo TAP-DONE
      """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: ip)
    p.arguments =
      inNS.dropFirst() + [
        GuestImages.swiftvmmBinary, "linux", "--engine", "interpreter", "--net", "tap=tap0",
        "--run", commands,
      ]
    let output = Pipe()
    p.standardOutput = output
    p.standardError = output
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let watchdog = DispatchWorkItem { p.terminate() }
    DispatchQueue.global().asyncAfter(deadline: .now() + 900, execute: watchdog)
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    watchdog.cancel()
    XCTAssertEqual(p.terminationStatus, 0, String(text.suffix(3000)))
    XCTAssertTrue(text.contains("3 packets received"), "ping failed:\n\(text.suffix(3000))")
    XCTAssertTrue(
      text.contains("http-md5=\(try LinuxNetworkTests.md5(dir + "/blob", busybox: guest.busybox))"),
      "download differs:\n\(text.suffix(3000))")
    XCTAssertTrue(text.contains("TAP-DONE"), String(text.suffix(3000)))
    let end = Date().addingTimeInterval(30)
    while listener.isRunning && Date() < end { usleep(100_000) }
    if listener.isRunning { listener.terminate() }
    try? listenerInput.fileHandleForWriting.close()
    let stream = try String(contentsOfFile: receivedPath, encoding: .utf8)
    XCTAssertEqual(stream, expected, "the TCP stream differs:\n\(text.suffix(1500))")
  }
}
