import Foundation
import XCTest

@testable import VMM

final class NetworkSpecTests: XCTestCase {
  func testParsesTheForms() throws {
    XCTAssertEqual(try NetworkSpec.parse("none"), NetworkSpec.none)
    XCTAssertEqual(try NetworkSpec.parse("user"), .user(forwards: []))
    XCTAssertEqual(try NetworkSpec.parse("tap=tap0"), .tap(name: "tap0"))
    XCTAssertEqual(
      try NetworkSpec.parse("user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp::5353-10.0.2.15:53"),
      .user(forwards: [
        .init(udp: false, hostAddress: "127.0.0.1", hostPort: 2222, guestPort: 22),
        .init(udp: true, hostAddress: "127.0.0.1", hostPort: 5353, guestPort: 53),
      ]))
  }

  func testRefusesMalformedSpecsWithOneLine() {
    for bad in [
      "", "usr", "none,x", "tap=", "tap=a/b", "tap=waytoolongname0123", "user,hostfwd=tcp:2222:22",
      "user,hostfwd=tcp::0-:22", "user,hostfwd=tcp::70000-:22", "user,hostfwd=tcp:1.2.3:22-:22",
      "user,hostfwd=tcp::2222-10.0.2.16:22", "user,foo=1",
      "user,hostfwd=tcp::22-:1,hostfwd=tcp::22-:2",
    ] {
      XCTAssertThrowsError(try NetworkSpec.parse(bad), bad) { e in
        let text = "\(e)"
        XCTAssertTrue(text.hasPrefix("--net \(bad):"), text)
        XCTAssertFalse(text.contains("\n"), text)
      }
    }
  }
}

final class UserNetworkBackendTests: XCTestCase {
  /// An ARP request from the guest's DHCP address for the gateway gets slirp's reply.
  func testGatewayAnswersARP() throws {
    let backend = try UserNetworkBackend(forwards: [])
    let received = expectation(description: "a frame from slirp")
    received.assertForOverFulfill = false
    backend.onReceive = { received.fulfill() }
    let guestMAC = NetworkSpec.defaultMAC
    var arp: [UInt8] = [UInt8](repeating: 0xFF, count: 6) + guestMAC + [0x08, 0x06]
    arp +=
      [0, 1, 8, 0, 6, 4, 0, 1] + guestMAC + [10, 0, 2, 15] + [0, 0, 0, 0, 0, 0] + [10, 0, 2, 2]
    arp += [UInt8](repeating: 0, count: 60 - arp.count)
    backend.send(arp)
    wait(for: [received], timeout: 10)
    let frames = backend.takeReceived()
    let reply = try XCTUnwrap(frames.first { $0.count >= 42 && $0[12] == 8 && $0[13] == 6 })
    XCTAssertEqual(Array(reply[0..<6]), guestMAC, "addressed to the guest")
    XCTAssertEqual(Array(reply[20..<22]), [0, 2], "an ARP reply")
    XCTAssertEqual(Array(reply[28..<32]), [10, 0, 2, 2], "for the gateway's address")
  }

  func testForwardingAPortInUseIsRefused() throws {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(listener) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) }
    }
    listen(listener, 1)
    _ = withUnsafeMutablePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) }
    }
    let port = Int(UInt16(bigEndian: addr.sin_port))
    XCTAssertThrowsError(
      try UserNetworkBackend(forwards: [
        .init(udp: false, hostAddress: "127.0.0.1", hostPort: port, guestPort: 22)
      ])
    ) { XCTAssertTrue("\($0)".contains("cannot forward tcp 127.0.0.1:\(port)"), "\($0)") }
  }
}
