import Foundation
import TestSupport
import XCTest

@testable import VMM

/// A machine with virtio-console and virtio-net saves, and the restored machine has
/// the same devices: console kind, network back-end spec and MAC (the devices' own
/// state is checked in DevicesTests.VirtioStateTests and on Linux in LinuxTests).
final class VirtioSnapshotConfigTests: XCTestCase {
  func testConsoleAndNetworkAreSavedAndRebuilt() throws {
    var c = try SnapshotTests.config("echo.elf", engine: .interpreter)
    c.virtio.console = .virtio
    c.virtio.network = .user(forwards: [])
    c.virtio.mac = [0x52, 0x54, 0, 0xAB, 0xCD, 0xEF]
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    let path = NSTemporaryDirectory() + "virtio-config-\(getpid()).snap"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try m.saveSnapshot(to: path)
    let r = try Machine(restoring: path, engine: .translator, console: ConsoleOutput(capturing: ()))
    XCTAssertEqual(r.config.virtio.console, .virtio)
    XCTAssertEqual(r.config.virtio.network, .user(forwards: []))
    XCTAssertEqual(r.config.virtio.mac, c.virtio.mac)
  }

  func testNetworkSpecTextParsesBackToTheSpec() throws {
    for text in [
      "none", "user", "tap=tap0",
      "user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:5353-:53",
    ] {
      let s = try NetworkSpec.parse(text)
      XCTAssertEqual(try NetworkSpec.parse(s.spec), s, text)
    }
  }
}
